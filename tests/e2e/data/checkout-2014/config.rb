# config.rb as the README of late 2014 had users make it from config.rb.sample: three
# machines on the stable channel. The commented block is the sample's own way of fetching a
# discovery token on every `vagrant up`, which pytest-coreos does itself.
$new_discovery_url = 'https://discovery.etcd.io/new'

#if File.exists?('user-data') && ARGV[0].eql?('up')
#  require 'open-uri'
#  token = open($new_discovery_url).read
#end

$num_instances=3
$update_channel='stable'
#$enable_serial_logging=false
#$vb_memory = 1024
