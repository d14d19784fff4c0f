# What the two package recipes render, for nix/tests/package_checks.py: the attributes of
# nix/skypilot.nix's override and of nix/package.nix's buildRustPackage call, evaluated with
# nixpkgs' lib and stand-ins for the builders (nothing is built).
#
#   nix-instantiate --eval --strict --json nix/tests/packages.nix --arg nixpkgsLib DIR
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  python = {
    interpreter = "/python/bin/python3";
    sitePackages = "lib/python3/site-packages";
  };
  skypilotAttrs = import ../skypilot.nix {
    inherit lib;
    skypilot.overridePythonAttrs = f: f { };
    python3Packages = { inherit python; };
    fetchPypi = args: args;
  };
  # The source as the list of paths its fileset unites, not a store path (the fileset
  # library needs a newer Nix than some machines have; package.nix uses only unions).
  libForRust = lib // {
    fileset = {
      unions = paths: paths;
      toSource = { root, fileset }: map toString fileset;
    };
  };
  rustAttrs = import ../package.nix {
    lib = libForRust;
    rustPlatform.buildRustPackage = attrs: attrs;
  };
in
{
  skypilot = {
    inherit (skypilotAttrs) pythonImportsCheck;
    postFixup = skypilotAttrs.postFixup or "";
    # The step of postInstall that applies nix/patches/, for a site-packages at
    # "lib/python3/site-packages" of $out; @python@ stands for the interpreter.
    applySitePatches = skypilotAttrs.passthru.applySitePatches {
      sitePackages = "lib/python3/site-packages";
      interpreter = "@python@";
    };
    postInstall = skypilotAttrs.postInstall;
  };
  skypilot-host = {
    root = toString ../..;
    src = rustAttrs.src;
    cargoTestFlags = rustAttrs.cargoTestFlags or [ ];
    checkFlags = rustAttrs.checkFlags or [ ];
    doCheck = rustAttrs.doCheck or true;
  };
}
