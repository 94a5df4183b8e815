"""Tests of voxwire.agents."""
