# hvmon daemon configuration (HCL). Every setting is shown; the optional ones
# carry their default. Unknown settings are errors. Relative paths resolve
# against this file's directory. Check a change with
#   hvmon daemon --check --config /etc/hvmon/hvmon.hcl
# and apply it with SIGHUP (systemctl reload hvmon): vm blocks take effect at
# once, other settings at the next restart.

# Name recorded in every report as the observing host (default: the
# machine's host name).
host_name = "hv-1"

# The host's ML-DSA-65 signing key (hvmon keygen -o /etc/hvmon/host.key).
# Must be mode 0600. Verifiers pin /etc/hvmon/host.key.pub.
key = "/etc/hvmon/host.key"

# Where signed reports are stored, one file each, append-only.
data_dir = "/var/lib/hvmon"

# The local API (unix socket, HTTP+JSON). Mode 0600, or 0660 with api_group.
api_socket = "/run/hvmon/api.sock"
# api_group = "hvmon"

# Prometheus metrics; keep it on loopback.
metrics_listen = "127.0.0.1:9464"

# Lifetime written into each report (verifiers cap it at 24h by default).
ttl = "5m"

# How long to wait for the guest agent's evidence for one event.
agent_timeout = "60s"

# How long an outgoing live migration may be held (its bulk transfer
# stopped, the guest running) while the agent is asked for the migrate-out
# evidence; the hold ends as soon as the agent has answered. A duration, or
# "off". Default: agent_timeout.
# migration_hold = "60s"

# Default interval of periodic attestations; "" or "0s" disables them.
periodic = "10m"

# A directory of sockets to follow without listing VMs here: NAME.qmp
# (a QMP socket for hvmon) and, optionally, NAME.agent (the agent channel).
# watch_dir = "/run/hvmon/vms"

# Public keys of peer hosts whose reports reach this host's store (a shared
# data_dir). The libvirt hook (hvmon hook) allows an incoming migration only
# when the domain's newest stored report verifies under this host's key or
# one of these; that decision matters only for hooks installed with
# --fail-closed.
# trust_peers = ["/etc/hvmon/peers/host-b.pub"]

# Follow libvirt domains: every domain whose XML has hvmon's agent channel
# (hvmon libvirt channel-xml), plus the domains matching `domains`.
# Needs an hvmon built with cgo against libvirt. Do not also list a libvirt
# domain in a vm block.
# libvirt {
#   uri     = "qemu:///system"
#   domains = ["ai-*"]
#   regions = ["weights"]
# }

# One block per VM (these two are examples: uncomment and adapt them; a
# vm block for a VM that does not exist only gives a reconnecting worker and
# warnings). The name is the VM's name in every report; it follows
# the VM name rule [A-Za-z0-9][A-Za-z0-9._+@:-]{0,127} (ASCII, no spaces).
# qmp is a QMP socket reserved for hvmon
# (QEMU: -qmp unix:/run/hvmon/llm-1.qmp,server=on,wait=off); agent is the
# unix socket of the agent's virtio-serial chardev.
#vm "llm-1" {
#  uuid          = "6f1c1d2e-0000-4000-8000-000000000001"
#  qmp           = "/run/hvmon/llm-1.qmp"
#  agent         = "/run/hvmon/llm-1.agent"
#  agent_port_id = "agentport0" # the -device virtserialport id=
#  periodic      = "5m"
#  regions       = []           # agent region ids; empty means all
#}

# A VM without a TEE: the host measures guest-physical ranges itself
# (QMP pmemsave into a private temporary file, measured, deleted). Such
# claims say platform "host" and never pass a policy that asks for
# hardware evidence. QEMU must be able to write to $TMPDIR.
#vm "plain-1" {
#  qmp = "/run/hvmon/plain-1.qmp"
#  host_region "kernel-text" {
#    address = 16777216 # 0x1000000
#    size    = 4194304
#  }
#}

# How hardware evidence is checked before the host signs around it.
# evidence {
#   allow_simulated = false      # simulated SEV-SNP/TDX evidence (tests, demos)
#   simulated_roots = []         # PEM files of the simulated roots to trust
#   simulated_seed  = ""         # or: the hex seed the agents' simulated chains come from
#   amd_roots       = ""         # a PEM file of AMD ARK/ASK certificates instead of the built-in ones
#   intel_roots     = ""         # a PEM file of Intel roots instead of the built-in one
#   allow_debug     = false      # accept debug guests
# }

# Transparency logs every stored report is submitted to (hvmon logd). The
# verified proof is kept beside each report NAME.cose as NAME.LABEL.proof;
# a report the log refuses for good (400, 413) gets NAME.LABEL.refused.
# Several blocks are allowed; a label is 1 to 32 of a-z, 0-9 and -.
# log "main" {
#   url          = "http://log.example:8790"
#   key          = "/etc/hvmon/log.vkey"   # the log's verifier key, or a file holding it
#   witness_keys = ["/etc/hvmon/witness-1.vkey"]  # witness verifier keys (or files)
#   quorum       = 1                       # unset: all witness_keys; 0: none checked
#   read_url     = ""                      # checkpoint and tiles; empty means url
#   concurrency  = 32                      # submissions in flight
#   timeout      = "60s"                   # one submission, proof included
#   min_backoff  = "1s"
#   max_backoff  = "5m"                    # also caps Retry-After and is the wait after a 403
# }
