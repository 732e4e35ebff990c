"""The agent of the stand-in box: coreos-cloudinit's job for Vagrant user-data."""
