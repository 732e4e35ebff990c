# config.rb as the README of 2016 had users make it from config.rb.sample: three machines
# on the stable channel. The sample's own code asks discovery.etcd.io for a token and writes
# it into user-data on every `vagrant up`; pytest-coreos leaves that code out and gives the
# cluster its own discovery URL.
$num_instances=3
$update_channel="stable"
$image_version="current"
$new_discovery_url="https://discovery.etcd.io/new?size=#{$num_instances}"

if File.exists?('user-data') && ARGV[0].eql?('up')
  require 'open-uri'
  token = open($new_discovery_url).read
end

#$vm_memory = 1024
#$vb_cpuexecutioncap = 100
