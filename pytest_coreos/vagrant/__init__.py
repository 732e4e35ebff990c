"""Files the vagrant provider ships: the Vagrantfile template and the stand-in box's agent."""
