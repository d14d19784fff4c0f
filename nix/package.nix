# skypilot-host: the host services (one Rust crate, lib + binary).
{ lib
, rustPlatform
,
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "skypilot-host";
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../tests
      ../benches
      ../scripts
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The default test run: unit and integration tests that need no SkyPilot server
  # (the `real-server` feature is off; those run in the project's CI with a real server).

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.mit;
    mainProgram = "skypilot-host";
    platforms = lib.platforms.linux;
  };
}
