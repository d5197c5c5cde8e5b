# hvmon appraisal policy (HCL), for "hvmon verify --policy FILE REPORT".
# docs/POLICY.md is the normative description; "hvmon policy init" writes a
# starting policy from a golden report and "hvmon policy check" checks one.
# Unknown settings and blocks are errors. Relative paths are relative to
# this file.

# Who may sign reports: the host keys (PEM SPKI, as "hvmon keygen" writes
# them). host_key_ids pins keys by id (SHA3-256 of the key, hex) that the
# verifier is given another way (hvmon verify --trust). A report signed by
# a --trust key the policy does not name gives a warning.
trust {
  host_keys    = ["keys/hv-1.pub", "keys/hv-2.pub"]
  host_key_ids = []
}

# Hardware roots. Without this block (or with amd/intel left out) the AMD
# ARK/ASK chains and the Intel SGX Root CA built into hvmon are pinned;
# listing files here replaces them. Nothing is ever fetched: AMD and Intel
# collateral exists for hvmon only as files.
hardware_roots {
  # amd   = ["roots/ask_ark_milan.pem", "roots/ask_ark_genoa.pem"]
  # intel = ["roots/intel_sgx_root_ca.pem"]

  # SIMULATED evidence (evidence/sim) verifies only with this switch and
  # its own roots (files, or the seed the agents were given). Tests and
  # demonstrations only.
  allow_simulated = false
  # simulated      = ["roots/simulated.pem"]
  # simulated_seed = "68766d6f6e2064656d6f2073696d756c61746564"
}

# Rules for every VM. Each vm block below may override any of them.
defaults {
  # Only the VMs a vm block below matches are appraised: a report for any
  # other VM (another name, or one of these names spelled with a trailing
  # space or a look-alike letter) is contraindicated (unknown_vm,
  # invalid_vm_name). This is the default for a policy with vm blocks;
  # false lets VMs no block matches fall under these defaults.
  require_vm_block = true

  # The report must embed guest evidence with SEV-SNP or TDX evidence, and
  # every region must come from the guest: none the host measured itself,
  # none its signer claims. This is the default; set false for VMs without
  # a TEE (then host-measured regions count).
  require_hardware = true

  # Evidence types accepted (sev-snp, tdx, simulated-sev-snp,
  # simulated-tdx); leave out for any.
  hardware_types = ["sev-snp", "tdx"]

  # Reports issued longer ago than this are contraindicated.
  max_age = "15m"

  # Lifecycle events accepted.
  allowed_events = ["boot", "migrate-out", "migrate-in", "snapshot", "restore", "periodic", "on-demand"]

  # Regions that must be present, whatever their roots.
  required_regions = ["weights"]

  # SEV-SNP rules, after go-sev-guest's validate.Options and check.Policy.
  snp {
    # Debug guests (the host can read and write their memory) are
    # contraindicated unless this says true.
    allow_debug = false
    # Guest policy bits: SMT may be allowed; a migration agent may not.
    allow_smt             = true
    allow_migration_agent = false
    # minimum_guest_svn = 1
    # vmpl              = 0
  }

  # TDX rules, after go-tdx-guest's validate.Options.
  tdx {
    allow_debug = false
    # The lowest TEE_TCB_SVN accepted, compared byte by byte (16 bytes).
    # minimum_tee_tcb_svn = "03000400000000000000000000000000"
  }
}

# Rules for the VMs whose names match the pattern (a shell glob: *, ?,
# [...]; "\" escapes; "*" does not match "/"). Every matching block applies,
# in file order, each overriding what it sets.
vm "llm-*" {
  # The host launches each of these VMs with its name's identity as SEV-SNP
  # HOST_DATA or TDX MRCONFIGID ("hvmon vm identity NAME" prints it): a
  # report whose hardware evidence carries another VM's identity (evidence
  # relabelled by its host) is contraindicated.
  bind_vm_identity = true

  # Accepted roots of a region; a root outside the set is contraindicated
  # (or, with on_mismatch = "warning", a warning). A region block makes
  # the region required unless it says required = false.
  region "weights" {
    roots = [
      "3f1c00000000000000000000000000000000000000000000000000000000009a",
      "77de000000000000000000000000000000000000000000000000000000000001",
    ]
  }
  region "kv-cache" {
    roots       = ["0000000000000000000000000000000000000000000000000000000000000000"]
    required    = false
    on_mismatch = "warning"
  }

  snp {
    # Launch measurements accepted (48 bytes, hex).
    measurements = ["b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"]
    # The lowest REPORTED_TCB accepted, per component (Milan and Genoa
    # layout).
    minimum_tcb {
      bootloader = 3
      tee        = 0
      snp        = 8
      microcode  = 115
    }
    # HOST_DATA the host launched the guest with (32 bytes), pinned to fixed
    # values; bind_vm_identity above checks it against the VM's name instead.
    # host_data = ["0000000000000000000000000000000000000000000000000000000000000000"]
  }

  tdx {
    mrtd         = ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"]
    rtmr0        = ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"]
    # mr_config_id = [...] pins MRCONFIGID to fixed values (48 bytes, hex);
    # bind_vm_identity above checks it against the VM's name instead.
  }
}

# A VM without a TEE: the host measures its memory itself.
vm "build-box" {
  require_hardware = false
  hardware_types   = []
  allowed_events   = ["boot", "periodic", "shutdown"]
  required_regions = []
}
