# Reports of "hvmon attest" over files: no hardware evidence.
trust {
  host_keys = ["host.pub"]
}
defaults {
  require_hardware = false
  allowed_events   = ["on-demand"]
  max_age          = "1h"
  region "a" {
    roots = ["1ac628e39dcd96bc569066daed1353b60d7f44f290461524c93286f9a1ce7dbd"]
  }
  region "b" {
    roots       = ["6b70e6dd98b15e5dac969634625983bdae591e0eac94899fdb9032500695e079"]
    on_mismatch = "warning"
  }
}
