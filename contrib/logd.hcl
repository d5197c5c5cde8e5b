# hvmon log server configuration (HCL), for `hvmon logd --config FILE`.
# Every setting is shown; the optional ones carry their default, except
# metrics_listen (default: none). Unknown settings are errors.

# The log's name: the first line of every checkpoint and the name of its
# key. 1-255 printable bytes, no spaces or '+'.
origin = "log.example.org/hvmon"

# The log's ML-DSA-44 checkpoint key, mode 0600
# (hvmon logd keygen --origin ORIGIN --out /etc/hvmon/log); hosts and
# verifiers pin /etc/hvmon/log.vkey.
key = "/etc/hvmon/log.key"

# Public keys of the hosts whose reports are accepted: concatenated
# host.key.pub files, '#' comments allowed. Reloaded on SIGHUP and when the
# file changes; a file that fails to load keeps the previous list.
allowlist = "/etc/hvmon/log-hosts.pem"

# Submissions and reads (plain HTTP; put TLS in front of it).
listen = "127.0.0.1:8790"

# Prometheus metrics at /metrics; empty (the default) disables them.
metrics_listen = "127.0.0.1:9465"

# How often a checkpoint is published (a submission waits for the next
# one); at least 100ms for posix storage, 1s for aws.
checkpoint_interval = "1s"

# Sequencing batches.
batch_max_size = 256
batch_max_age = "100ms"

# Entries sequenced but not yet integrated before submissions get 503
# (aws storage only).
pushback_max_outstanding = 4096

# Submissions waiting for their proof before more get 503.
max_inflight = 4096

# How long a submission waits for a published checkpoint before 503; the
# entry stays sequenced and a resubmission gets the same index.
await_timeout = "30s"

# Storage: exactly one of posix (one logd process) or aws (several).
posix {
  dir = "/var/lib/hvmon-log"
  # Persistent dedup index (default: DIR/.antispam).
  # antispam_dir = "/var/lib/hvmon-log/.antispam"
}

# aws {
#   # Sequencing (MySQL-compatible) and the dedup index, in two databases.
#   dsn          = "hvmon:PASSWORD@tcp(127.0.0.1:3306)/hvmon_log"
#   antispam_dsn = "hvmon:PASSWORD@tcp(127.0.0.1:3306)/hvmon_antispam"
#   # Tiles: an S3 bucket. With an endpoint (an S3-compatible server), the
#   # credentials come from HVMON_S3_ACCESS_KEY / HVMON_S3_SECRET_KEY or
#   # the files named by HVMON_S3_ACCESS_KEY_FILE / HVMON_S3_SECRET_KEY_FILE.
#   bucket     = "hvmon-log"
#   endpoint   = "http://127.0.0.1:7070"
#   region     = "us-east-1"
#   path_style = true
#   max_open_conns          = 16
#   antispam_max_open_conns = 32
# }

# Witnesses cosign each checkpoint before it is published. vkey is the
# witness's verifier key (Ed25519 or ML-DSA-44); logd posts to
# URL/add-checkpoint.
# witness "witness-1" {
#   vkey = "witness-1.example+01234567+BASE64"
#   url  = "https://witness-1.example"
# }

# How many witnesses must cosign (default: all configured).
# witness_quorum = 1
witness_timeout = "5s"
# Publish a checkpoint without its quorum after witness_timeout. Verifiers
# that require witnesses refuse the proofs of such checkpoints.
witness_fail_open = false
