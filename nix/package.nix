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

  # The check phase runs the tests that need nothing outside the source: the library's and
  # the binary's own tests. The integration tests (tests/it) run promtool and curl, read
  # contrib/ and some need SkyPilot; the build sandbox has none of these, so they run in the
  # project's CI (scripts/test.sh) instead.
  cargoTestFlags = [ "--lib" "--bins" ];

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.mit;
    mainProgram = "skypilot-host";
    platforms = lib.platforms.linux;
  };
}
