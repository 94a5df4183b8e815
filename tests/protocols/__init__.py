"""Tests of voxwire.protocols."""
