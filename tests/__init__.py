"""voxwire's test suite: a package, so that its helper modules import by their full name."""
