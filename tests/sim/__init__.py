"""Tests of voxwire.sim."""
