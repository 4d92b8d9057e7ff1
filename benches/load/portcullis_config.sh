# Sourced by compare.sh and ab.sh: the portcullis configs both benches run.
#
#   portcullis_config KIND HTTPS_PORT UPSTREAM_PORT STORAGE_DIR > file.toml
#
# KIND `policy`: every path needs a login (a session cookie verified on every
# request), a never-tripping per-IP limit, the default security headers.
# Anything else (`plain`): public, no limit, no security headers (as nginx's
# plain config sends none). The certificate is cert.pem/key.pem beside the
# config file; `policy` needs users.toml there and PORTCULLIS_SESSION_KEYS.
portcullis_config() {
  local kind=$1 https=$2 up=$3 storage=$4 extra
  if [ "$kind" = policy ]; then
    extra='[secrets]
session_keys = "env:PORTCULLIS_SESSION_KEYS"
[session]
users = "users.toml"
[access]
default = "login"
[rate_limit]
default = "4294967295/day"
[[route]]
path = "/"
access = "login"'
  else
    extra='[access]
default = "public"
[rate_limit]
default = "off"
[headers]
hsts = ""
csp = ""
frame_options = ""
content_type_options = ""
referrer_policy = ""
permissions_policy = ""
coop = ""
remove = []'
  fi
  cat <<EOC
[server]
https = "127.0.0.1:$https"
threads = 1
[tls]
mode = "files"
domains = ["localhost"]
storage = "$storage"
cert = "cert.pem"
key = "key.pem"
[upstreams.app]
addrs = ["127.0.0.1:$up"]
$extra
EOC
}
