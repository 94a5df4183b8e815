"""Tests of voxwire.sip."""
