# Size of the CoreOS cluster created by Vagrant
$num_instances=2

# Official CoreOS channel from which updates should be downloaded
$update_channel='beta'

# Used to fetch a new discovery token for a cluster of size $num_instances
$new_discovery_url="https://discovery.etcd.io/new?size=#{$num_instances}"

# Automatically replace the discovery token on 'vagrant up'
if File.exists?('user-data') && ARGV[0].eql?('up')
  require 'open-uri'
  token = open($new_discovery_url).read
end

# Customize VMs
$vm_memory = 2048
$vm_cpus = 2
