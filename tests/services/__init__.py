"""Tests of voxwire.services."""
