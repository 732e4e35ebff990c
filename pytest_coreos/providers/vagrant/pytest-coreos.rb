# pytest-coreos's part of a cluster's Vagrantfile, loaded by its own Vagrantfile and, in a
# copy of a coreos-vagrant checkout (--coreos-vagrant-dir), from a line appended to it.
#
# It reads pytest-coreos.json next to the Vagrantfile (written for each cluster: the box,
# the name prefix of the VMs, each machine's private address) and gives the machines:
#   - the provider settings: memory and CPUs from config.rb, libvirt names prefixed with
#     the run's id (so that a later run finds and removes what a killed one left), QEMU's
#     TCG by default ($libvirt_driver = "kvm" in config.rb where KVM works);
#   - with --coreos-config=ignition, each machine's Ignition config as a QEMU firmware
#     config entry (libvirt);
#   - a box file's name and version (through the metadata file the plugin wrote), and
#     for libvirt its kernel and initrd, copied where QEMU reads them;
#   - one provisioning pass: hostname, COREOS_PRIVATE_IPV4/COREOS_PUBLIC_IPV4 in
#     /etc/environment (as CoreOS's Vagrant support wrote them), the SSH host key the
#     plugin pins, fleetd and fleetctl in /usr/bin (with --coreos-fleet), docker's
#     /etc/docker/daemon.json (with --coreos-images), and the user-data moved to
#     /var/lib/coreos-vagrant/vagrantfile-user-data.
require "json"

module PytestCoreOS
  HERE = File.dirname(__FILE__)
  SETTINGS_PATH = File.join(HERE, "pytest-coreos.json")
  SETTINGS = File.exist?(SETTINGS_PATH) ? JSON.parse(File.read(SETTINGS_PATH)) : {}

  # Runs on the machine as root, with the machine's name and private address.
  SETUP = <<~'SHELL'
    set -eu
    name="$1"
    address="$2"
    # The host key the plugin pins, base64 (private, public): given here, it costs no upload.
    if [ -n "${3:-}" ]; then
      mkdir -p /tmp/pytest-coreos
      printf '%s' "$3" | base64 -d > /tmp/pytest-coreos/ssh_host_ed25519_key
      printf '%s' "$4" | base64 -d > /tmp/pytest-coreos/ssh_host_ed25519_key.pub
    fi
    # The hostname, without Vagrant's own step that restarts every network interface.
    echo "$name" > /etc/hostname
    hostname "$name"
    sed -i '/^127\.0\.1\.1[[:space:]]/d' /etc/hosts
    printf '127.0.1.1\t%s\n' "$name" >> /etc/hosts
    sed -i '/^COREOS_PRIVATE_IPV4=/d; /^COREOS_PUBLIC_IPV4=/d' /etc/environment
    printf 'COREOS_PRIVATE_IPV4=%s\nCOREOS_PUBLIC_IPV4=%s\n' "$address" "$address" >> /etc/environment
    if [ -f /tmp/pytest-coreos/ssh_host_ed25519_key ]; then
      install -m 600 /tmp/pytest-coreos/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
      install -m 644 /tmp/pytest-coreos/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub
      systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true
    fi
    # fleet, when the plugin was given it (--coreos-fleet): before the user-data starts it.
    for binary in fleetd fleetctl; do
      if [ -f "/tmp/pytest-coreos/$binary" ]; then
        install -m 755 "/tmp/pytest-coreos/$binary" "/usr/bin/$binary"
      fi
    done
    # docker's configuration, with --coreos-images: the session's registry as its mirror.
    if [ -f /tmp/pytest-coreos/daemon.json ]; then
      install -D -m 644 /tmp/pytest-coreos/daemon.json /etc/docker/daemon.json
    fi
    rm -rf /tmp/pytest-coreos
    if [ -f /tmp/vagrantfile-user-data ]; then
      mkdir -p /var/lib/coreos-vagrant
      mv /tmp/vagrantfile-user-data /var/lib/coreos-vagrant/vagrantfile-user-data
    fi
  SHELL

  def self.setting(name, default)
    value = SETTINGS[name]
    value.nil? ? default : value
  end

  # A global of config.rb (coreos-vagrant's way of configuring), or +default+.
  def self.global(name, default)
    value = global_variables.include?(:"$#{name}") ? eval("$#{name}") : nil
    value.nil? ? default : value
  end

  # The address of machine +name+ as this cluster planned it, or nil.
  def self.address(name)
    machine_setting(name, "ip")
  end

  def self.machine_setting(name, key)
    machine = setting("machines", []).find { |entry| entry["name"] == name }
    machine && machine[key]
  end

  # With --coreos-config=ignition: machine +name+'s Ignition config, handed to QEMU as the
  # firmware config entry Flatcar's images read it from (opt/org.flatcar-linux/config).
  def self.ignition(machine, name)
    path = machine_setting(name, "ignition")
    return unless path
    machine.vm.provider :libvirt do |libvirt|
      libvirt.qemuargs value: "-fw_cfg"
      # QEMU's option syntax: a comma in a value is written twice.
      libvirt.qemuargs value: "name=opt/org.flatcar-linux/config,file=#{path.gsub(",", ",,")}"
    end
  end

  def self.configure_providers(config)
    config.vm.box = SETTINGS["box"] if SETTINGS["box"]
    # A box file is added from the metadata file the plugin wrote for it, under the box's
    # name and a version: a checkout's own box_version constraint then holds.
    config.vm.box_url = SETTINGS["box_url"] if SETTINGS["box_url"]
    config.vm.box_version = SETTINGS["box_version"] if SETTINGS["box_version"]
    config.vm.box_check_update = false
    config.vm.synced_folder ".", "/vagrant", disabled: true
    # Machines whose login is not Vagrant's (a cloud image's own user and key pair).
    ssh_username = global("ssh_username", nil)
    config.ssh.username = ssh_username if ssh_username
    ssh_key = global("ssh_private_key_path", nil)
    config.ssh.private_key_path = ssh_key if ssh_key
    config.vm.provider :libvirt do |libvirt|
      libvirt.default_prefix = SETTINGS["name_prefix"] if SETTINGS["name_prefix"]
      libvirt.driver = global("libvirt_driver", "qemu")
      libvirt.cpu_mode = global("libvirt_cpu_mode", "custom")
      libvirt.cpu_model = global("libvirt_cpu_model", "qemu64") if libvirt.cpu_mode == "custom"
      libvirt.memory = global("vm_memory", 512)
      libvirt.cpus = global("vm_cpus", 1)
      libvirt.graphics_type = "none"
      # A box's own kernel and initrd, copied where libvirt's QEMU user reads them.
      libvirt.kernel = SETTINGS["kernel"] if SETTINGS["kernel"]
      libvirt.initrd = SETTINGS["initrd"] if SETTINGS["initrd"]
    end
    config.vm.provider :virtualbox do |virtualbox|
      virtualbox.memory = global("vm_memory", 512)
      virtualbox.cpus = global("vm_cpus", 1)
      virtualbox.check_guest_additions = false
    end
  end

  HOST_KEY = "ssh_host_ed25519_key"

  # Provisioners of machine +name+ at address +ip+: its own files where there are more
  # than its SSH host key (fleet's binaries), the user-data when +user_data+ names it (the
  # plugin's Vagrantfile; a coreos-vagrant checkout copies it itself), then SETUP, which
  # gets the host key as arguments. Each provisioner costs SSH round trips: as few as can be.
  def self.provision_machine(machine, name, ip, user_data)
    own_files = File.join(HERE, "machines", name)
    key = File.join(own_files, HOST_KEY)
    others = Dir.exist?(own_files) ? Dir.children(own_files) - [HOST_KEY, "#{HOST_KEY}.pub"] : []
    unless others.empty?
      machine.vm.provision "pytest-coreos-files", type: "file",
        source: own_files, destination: "/tmp/pytest-coreos"
    end
    if user_data && File.exist?(user_data)
      machine.vm.provision "user-data", type: "file",
        source: user_data, destination: "/tmp/vagrantfile-user-data"
    end
    args = [name, ip]
    if File.exist?(key)
      args += [[File.binread(key)].pack("m0"), [File.binread("#{key}.pub")].pack("m0")]
    end
    machine.vm.provision "pytest-coreos-setup", type: "shell", privileged: true,
      inline: SETUP, args: args
    ignition(machine, name)
    # A cloud provider has no Vagrant private network: the machine's planned address is
    # asked of its subnet (vagrant-aws).
    machine.vm.provider :aws do |aws|
      aws.private_ip_address = ip
    end
    if SETTINGS["name_prefix"]
      # libvirt takes default_prefix; VirtualBox is told each machine's name.
      machine.vm.provider :virtualbox do |virtualbox|
        virtualbox.name = "#{SETTINGS["name_prefix"]}#{name}"
      end
    end
  end

  # What a copy of a coreos-vagrant checkout gets on top of its own Vagrantfile.
  def self.extend_checkout
    Vagrant.configure("2") do |config|
      configure_providers(config)
      setting("machines", []).each do |entry|
        config.vm.define entry["name"] do |machine|
          provision_machine(machine, entry["name"], entry["ip"], nil)
        end
      end
    end
  end
end
