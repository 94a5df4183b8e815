"""Tests of voxwire.aio."""
