"""Tests of voxwire.voice."""
