# Evaluates `services.skypilot` with nixpkgs' lib and the stand-ins of stubs.nix, and
# returns what the checks look at, as JSON-friendly data.
#
#   nix-instantiate --eval --strict --json nix/tests/eval.nix \
#     --arg nixpkgsLib /path/to/nixpkgs/lib --argstr case seed-basic
#   ... --arg vmTest true    (the VM test's nodes and testScript)
#   ... --arg list true      (the case names)
#   ... --argstr runDir DIR  (the case with its directories under DIR, to be run by
#                            nix/tests/run_rendered.py)
{ nixpkgsLib
, case ? null
, vmTest ? false
, list ? false
, runDir ? null
,
}:
let
  lib = import nixpkgsLib;
  stubs = import ./stubs.nix { inherit lib; };
  cases = import ./cases.nix;

  evalNode = modules:
    lib.evalModules {
      modules =
        [
          stubs.nixosOptions
          { _module.args.pkgs = stubs.pkgs; }
        ]
        ++ modules;
    };

  summary = modules:
    let
      inherit (evalNode modules) config;
      # As NixOS does: a `script` without ExecStart becomes the ExecStart of a job script
      # (`#!bash -e` and the text), unit-script-<name>-start/bin/<name>-start in the store.
      scriptStart = name: u:
        lib.optionalAttrs ((u.script or "") != "" && !((u.serviceConfig or { }) ? ExecStart)) {
          ExecStart = "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" u.script)}-unit-script-${name}-start/bin/${name}-start";
        };
      unitSummary = name: u: {
        inherit (u) enable description wantedBy requiredBy wants requires after before unitConfig;
        # As NixOS does: `path` becomes PATH.
        environment =
          (u.environment or { })
          // lib.optionalAttrs ((u.path or [ ]) != [ ]) {
            PATH = "${lib.makeBinPath u.path}:${lib.makeSearchPathOutput "bin" "sbin" u.path}";
          };
        serviceConfig = (u.serviceConfig or { }) // scriptStart name u;
        timerConfig = u.timerConfig or { };
        script = u.script or "";
      };
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      inherit (config) warnings;
      services = lib.mapAttrs unitSummary config.systemd.services;
      timers = lib.mapAttrs unitSummary config.systemd.timers;
      users = config.users.users;
      groups = config.users.groups;
      tmpfiles = config.systemd.tmpfiles.rules;
      firewall = {
        inherit (config.networking.firewall) enable allowedTCPPorts allowedUDPPorts extraCommands extraStopCommands;
      };
      nftables = config.networking.nftables;
      hosts = config.networking.hosts;
      sudoRules = config.security.sudo.extraRules;
      sudoRsRules = config.security.sudo-rs.extraRules;
      variables = config.environment.variables;
      postgresql = config.services.postgresql;
      etc = lib.mapAttrs (_: e: toString e.source) config.environment.etc;
      systemPackages = map (p: p.name) config.environment.systemPackages;
      skypilot =
        let
          s = config.services.skypilot or { };
        in
        lib.optionalAttrs (s ? enable && s.enable) {
          inherit (s) settings config;
          launchDefaults = s.policy.launchDefaults;
          configInput = s.policy.configInput;
        };
    };

  # Where a run of the rendered units keeps its state: every directory option under runDir.
  # Nothing else of the case changes (the run has a network namespace of its own, so the
  # case's ports are free).
  runOverrides = lib.optional (runDir != null) {
    services.skypilot = {
      stateDir = "${runDir}/var/lib/skypilot";
      configDir = "${runDir}/var/lib/skypilot/config";
      logsDir = "${runDir}/var/log/skypilot";
      cacheDir = "${runDir}/var/cache/skypilot";
      backup.directory = "${runDir}/var/backup/skypilot";
    };
  };

  caseResult = summary ([ ../nixos-module.nix cases.${case} ] ++ runOverrides);

  vm =
    let
      test = import ../../tests/skypilot-module.nix;
    in
    {
      inherit (test) name testScript;
      nodes = lib.mapAttrs (_: node: summary [ node ]) test.nodes;
    };
in
if list
then lib.attrNames cases
else if vmTest
then vm
else caseResult
