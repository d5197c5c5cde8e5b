# The empty policy: hardware evidence required, debug guests forbidden,
# any signer the verifier pins.
