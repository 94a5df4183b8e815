"""Tests of voxwire.webrtc."""
