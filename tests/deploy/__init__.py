"""The reference deployment (deploy/) checked against the code it deploys."""
