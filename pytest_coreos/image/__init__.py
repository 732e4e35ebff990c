"""The stand-in machine image: a Debian system that plays CoreOS's part for the nspawn
and vagrant providers. Its parts ship in the package: the builder (``build-box``), the
agent that applies user-data and Ignition inside the machine (:mod:`.agent`, importing
only the standard library and the package's pure config modules), its unit files and
etcd wrapper. ``python -m pytest_coreos.image [box|--rootfs|--hash]`` builds (or finds
in its cache) the Vagrant box or the rootfs tree and prints its path."""
