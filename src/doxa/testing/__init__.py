"""Test and benchmark tools shipped with doxa (a fake provider on loopback); not for production."""
