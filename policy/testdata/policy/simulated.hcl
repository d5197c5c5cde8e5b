# Simulated SEV-SNP and TDX evidence from a fixed seed, per VM group.
hardware_roots {
  allow_simulated = true
  simulated_seed  = "00112233445566778899aabbccddeeff"
  simulated       = ["sim.pem"]
}
defaults {
  hardware_types = ["simulated-sev-snp", "simulated-tdx"]
}
vm "snp-*" {
  snp {
    measurements      = ["4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d"]
    minimum_guest_svn = 1
    vmpl              = 0
    allow_smt         = false
  }
}
vm "tdx-?" {
  tdx {
    mrtd                = ["4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d"]
    rtmr1               = []
    mr_owner            = ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"]
    td_attributes       = "0000000010000000"
    minimum_tee_tcb_svn = "03000400000000000000000000000000"
    allow_debug         = true
  }
}
