# NixOS module `services.skypilot`: a team SkyPilot server.
#
# Units (only with `systemdServices = true`):
#   skypilot-api-server       the real SkyPilot API server (`python -m sky.server.server --deploy
#                             --host 127.0.0.1`: what `sky api start --deploy --foreground`
#                             runs, without its replacing the host with a wildcard)
#   skypilot-cluster-manager  `skypilot-host cluster-manager` (enableCluster)
#   skypilot-monitor          `skypilot-host monitor` (monitoring.enable)
#   skypilot-autostop (+ .timer)  `skypilot-host autostop`, one pass per timer tick
#                             (enableCluster with cluster.autoStop)
#   skypilot-policy           `skypilot-host policy`: SkyPilot's admin policy (launch defaults
#                             and limits; policy.enable, on when a launch setting is set)
#   skypilot-web-ui           `skypilot-host web-ui` (enableWebUI): the console and the
#                             authenticated gateway to SkyPilot
{ config
, lib
, pkgs
, options
, ...
}:
let
  inherit
    (lib)
    mkOption
    mkEnableOption
    mkPackageOption
    mkIf
    mkMerge
    mkDefault
    types
    literalExpression
    optional
    optionals
    optionalAttrs
    ;

  cfg = config.services.skypilot;
  tomlFormat = pkgs.formats.toml { };

  storeDir = builtins.storeDir;
  inStore = p: lib.isStorePath p || lib.hasPrefix "${storeDir}/" (toString p);
  # A host as it stands in a URL or host:port: an IPv6 address in brackets.
  bracketed = host: if lib.hasInfix ":" host then "[${host}]" else host;
  # The two assertions every secret file gets: outside the store, and absolute. `advice`
  # ends the first message (what to do instead).
  secretFileAssertions = { option, path, advice ? ": give the path of a file outside the store." }: [
    {
      assertion = !(inStore path);
      message = "services.skypilot.${option} = \"${toString path}\" is in the Nix store, which every local user can read${advice}";
    }
    {
      assertion = isAbsolute path;
      message = "services.skypilot.${option} = \"${toString path}\" is not an absolute path.";
    }
  ];
  isAbsolute = p: lib.hasPrefix "/" (toString p);

  cloudNames = [ "aws" "gcp" "azure" "kubernetes" "lambda" "runpod" ];
  configuredClouds = lib.filter (c: cfg.cloudCredentials.${c} != null) cloudNames;

  # ---------------------------------------------------------------- cloud SDKs
  # SkyPilot 0.14.1's extras (the wheel's Requires-Dist for each), by nixpkgs attribute name,
  # and the programs SkyPilot runs for each cloud. The aws CLI comes with `awscli`.
  cloudPython = {
    aws = [ "boto3" "botocore" "awscli" ];
    gcp = [ "google-api-python-client" "google-cloud-storage" "pyopenssl" ];
    azure = [ "azure-core" "azure-identity" "azure-mgmt-network" "azure-mgmt-compute" "azure-storage-blob" "msgraph-sdk" "msrestazure" ];
    kubernetes = [ "kubernetes" "websockets" "python-dateutil" ];
    lambda = [ ];
    runpod = [ "runpod" "tomli" "pycares" ];
  };
  cloudTools = {
    aws = [ ];
    gcp = [ "google-cloud-sdk" ];
    azure = [ "azure-cli" ];
    kubernetes = [ "kubectl" ];
    lambda = [ ];
    runpod = [ ];
  };
  pythonPackages = cfg.package.pythonPackages or { };
  cloudPythonFound = c: lib.filter (n: pythonPackages ? ${n}) cloudPython.${c};
  cloudPythonMissing = c: lib.filter (n: !(pythonPackages ? ${n})) cloudPython.${c};
  cloudToolsMissing = c: lib.filter (n: !(pkgs ? ${n})) cloudTools.${c};
  cloudToolPackages = lib.concatMap (c: map (n: pkgs.${n}) (lib.filter (n: pkgs ? ${n}) cloudTools.${c})) cfg.clouds;
  # The Python that runs the API server: SkyPilot with the SDKs of `clouds`.
  hasServerPython = cfg.package ? serverPython;
  serverPython = cfg.package.serverPython (lib.unique (lib.concatMap cloudPythonFound cfg.clouds));
  serverInterpreter = serverPython.interpreter or "${serverPython}/bin/python3";
  credentialsWithoutSdk = lib.filter (c: !(builtins.elem c cfg.clouds)) configuredClouds;
  cloudsMissingParts = lib.filter (c: cloudPythonMissing c != [ ] || cloudToolsMissing c != [ ]) cfg.clouds;

  home = "${cfg.stateDir}/home";
  runtimeDir = "${cfg.stateDir}/runtime";
  apiUrl = "http://127.0.0.1:${toString cfg.apiServer.port}";
  # What users' `sky` is pointed at: the same server under a name of its own. SkyPilot treats
  # http://127.0.0.1:<port>, localhost, 0.0.0.0 and ::1 as a *local* server and then skips
  # uploading workdirs and file mounts (the server would read them from the user's home,
  # which the service cannot see); a host name makes it upload them.
  userApiUrl = "http://${cfg.apiServer.hostName}:${toString cfg.apiServer.port}";
  # With the web UI, users' `sky` goes through its gateway, which authenticates each person
  # and sets SkyPilot's identity header; the API server's port is then closed to the group
  # (only the service user, whose units include the web UI, and root may connect). The
  # gateway is named like the API server (a name, not 127.0.0.1: see userApiUrl) when it
  # listens on loopback or everywhere, else by the address it binds.
  webUIAnswersOnLoopback = builtins.elem cfg.webUI.host [ "0.0.0.0" "::" "127.0.0.1" "::1" "localhost" ];
  gatewayHost =
    if webUIAnswersOnLoopback then cfg.apiServer.hostName
    else bracketed cfg.webUI.host;
  # `webUI.publicUrl` when set (the name a TLS certificate or nginx answers to), else the
  # web UI's own address (https when it serves TLS itself).
  gatewayUrl =
    if cfg.webUI.publicUrl != null then lib.removeSuffix "/" cfg.webUI.publicUrl
    else "${if cfg.webUI.tlsCertFile != null then "https" else "http"}://${gatewayHost}:${toString cfg.webUI.port}";
  usersEndpoint = if cfg.enableWebUI then gatewayUrl else userApiUrl;
  groupMayConnect = cfg.apiServer.allowGroup && !cfg.enableWebUI;

  unitsEnabled = cfg.enable && cfg.systemdServices;
  # ---------------------------------------------------------------- scale-out
  # apiServer.enable = false: the host roles only, against a SkyPilot API server elsewhere.
  localApi = unitsEnabled && cfg.apiServer.enable;
  remoteApi = !cfg.apiServer.enable;
  # Where a unit finds what LoadCredential handed it (systemd's $CREDENTIALS_DIRECTORY).
  credentialPath = unit: id: "/run/credentials/${unit}.service/${id}";
  # SkyPilot's state in PostgreSQL (SKYPILOT_DB_CONNECTION_URI). Local: over the Unix
  # socket with peer authentication (database and role named after the service user), so
  # no password exists. External: the URI holds one, so it stays in uriFile and reaches
  # the server through LoadCredential and the start script, never the store or the unit.
  dbLocal = cfg.database.createLocally;
  dbExternal = cfg.database.uriFile != null;
  localDbUri = "postgresql+psycopg2://${cfg.user}@/${cfg.user}?host=/run/postgresql";
  # With a database SkyPilot refuses a config file of more than one top-level key
  # (sky/skypilot_config.py: "If db config is specified, no other config is allowed");
  # the seed's `cloud` and `spot` keys leave config.yaml, gcp's project becomes `workspaces`.
  renderedTopKeys = lib.unique (lib.attrNames (removeAttrs cfg.config [ "cloud" "spot" ])
    ++ optional ((cfg.config.cloud.gcp.project or null) != null) "workspaces");
  clusterManagerEnabled = unitsEnabled && cfg.enableCluster;
  monitorEnabled = unitsEnabled && cfg.monitoring.enable;
  autostopEnabled = clusterManagerEnabled && cfg.cluster.autoStop != null;
  # Seconds between two autostop passes (the timer's period).
  autostopInterval = cfg.settings.autostop.interval_secs or 300;

  # ---------------------------------------------------------------- launch policy
  # Anything a launch policy would apply: the module's cluster.* launch options and the
  # seed's compatibility keys that `sky-config render` maps into launch-policy.json.
  launchSettings =
    lib.filter (o: cfg.cluster.${o} != null) [ "autoStop" "defaultRegion" "defaultZone" "defaultInstanceType" "useSpot" "maxHourlyPrice" ]
    ++ lib.concatLists (lib.mapAttrsToList (c: v: lib.optionals (builtins.isAttrs v) (lib.filter (k: k == "region" || k == "zone") (lib.attrNames v))) (cfg.config.cloud or { }))
    ++ lib.filter (k: k == "enabled" || k == "max_price") (lib.attrNames (cfg.config.spot or { }));
  policyEnabled = unitsEnabled && cfg.policy.enable;
  policyRuntimeDir = "/run/skypilot-api-server";
  policyTokenGenerated = cfg.policy.tokenFile == null;
  policyTokenPath =
    if policyTokenGenerated
    then "${cfg.stateDir}/policy/token"
    else "/run/credentials/skypilot-policy.service/policy-token";
  # The module's launch options, merged by `sky-config render` into launch-policy.json.
  launchDefaultsJson = pkgs.writeText "skypilot-launch-defaults.json" (builtins.toJSON cfg.policy.launchDefaults);

  # ---------------------------------------------------------------- backups
  backupEnabled = unitsEnabled && cfg.backup.enable;
  # The schedule in seconds, for the monitor's alert (twice it without a backup).
  backupIntervals = { minutely = 60; hourly = 3600; daily = 86400; weekly = 604800; };
  backupInterval =
    if builtins.isString cfg.backup.startAt && backupIntervals ? ${cfg.backup.startAt}
    then backupIntervals.${cfg.backup.startAt}
    else 86400;
  # pg_dump of the PostgreSQL SkyPilot's state is in: the local server's own, else nixpkgs'.
  pgPackage = if dbLocal then config.services.postgresql.package else pkgs.postgresql;

  webUIEnabled = unitsEnabled && cfg.enableWebUI;
  webUIHost = bracketed cfg.webUI.host;
  webUILoopback = builtins.elem cfg.webUI.host [ "127.0.0.1" "::1" "localhost" ];
  # The web UI's secret files, loaded with LoadCredential: (credential id, option, path).
  webUIFiles = lib.filter (f: f.path != null) [
    { id = "users"; option = "usersFile"; flag = "--users-file"; path = cfg.webUI.usersFile; }
    { id = "tokens"; option = "tokensFile"; flag = "--tokens-file"; path = cfg.webUI.tokensFile; }
    { id = "tls-cert"; option = "tlsCertFile"; flag = "--tls-cert-file"; path = cfg.webUI.tlsCertFile; }
    { id = "tls-key"; option = "tlsKeyFile"; flag = "--tls-key-file"; path = cfg.webUI.tlsKeyFile; }
    {
      id = "oidc-client-secret";
      option = "oidc.clientSecretFile";
      flag = "--oidc-client-secret-file";
      path = if oidc.enable then oidc.clientSecretFile else null;
    }
  ];
  oidc = cfg.webUI.oidc;
  # The issuer's host is loopback: the only case where http:// is accepted.
  oidcIssuerLoopback = oidc.issuer != null
    && builtins.match "http://(127\\.[0-9.]+|localhost|[[]::1])(:[0-9]+)?(/.*)?" oidc.issuer != null;

  # ---------------------------------------------------------------- extraEnvironment
  # The seed's shell snippet, parsed here into systemd `Environment=` entries. Accepted:
  # blank lines, `# comments`, `export NAME=value` and `NAME=value`, where value is
  # unquoted (no blanks or shell syntax), 'single quoted' (literal) or "double quoted"
  # (\" \\ \$ \` escapes; no expansion). Anything else is reported with its line.
  envLines = lib.imap1 (n: line: { inherit n line; }) (lib.splitString "\n" cfg.extraEnvironment);
  trim = s:
    let
      m = builtins.match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s;
    in
    if m == null
    then ""
    else builtins.head m;
  unescapeDouble = s:
    lib.replaceStrings [ "\\\"" "\\\\" "\\$" "\\`" ] [ "\"" "\\" "$" "`" ] s;
  parseValue = raw:
    let
      single = builtins.match "'([^']*)'" raw;
      double = builtins.match "\"(([^\"\\\\$`]|\\\\[\"\\\\$`])*)\"" raw;
      plain = builtins.match "([^[:space:]'\"$`\\\\;&|<>(){}]*)" raw;
    in
    if single != null
    then { value = builtins.head single; }
    else if double != null
    then { value = unescapeDouble (builtins.head double); }
    else if plain != null
    then { value = builtins.head plain; }
    else null;
  parseLine =
    { n
    , line
    ,
    }:
    let
      t = trim line;
      m = builtins.match "(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)" t;
      v =
        if m == null
        then null
        else parseValue (builtins.elemAt m 2);
    in
    if t == "" || lib.hasPrefix "#" t
    then { skip = true; }
    else if m == null || v == null
    then {
      error = "services.skypilot.extraEnvironment line ${toString n}: `${t}` is not an assignment: expected `export NAME=value` or `NAME=value` (value unquoted without blanks or shell syntax, 'single quoted' or \"double quoted\" without expansions)";
    }
    else {
      name = builtins.elemAt m 1;
      inherit (v) value;
    };
  parsedEnv = map parseLine envLines;
  extraEnvErrors = map (p: p.error) (lib.filter (p: p ? error) parsedEnv);
  extraEnv = lib.listToAttrs (map (p: lib.nameValuePair p.name p.value) (lib.filter (p: p ? name) parsedEnv));

  # Values given by the user reach systemd verbatim: `%` would start a specifier.
  escapeSpecifiers = lib.mapAttrs (_: v: lib.replaceStrings [ "%" ] [ "%%" ] (toString v));

  # ---------------------------------------------------------------- credentials
  credentialEnv =
    optionalAttrs (cfg.cloudCredentials.aws != null) { AWS_SHARED_CREDENTIALS_FILE = "%d/aws"; }
    // optionalAttrs (cfg.cloudCredentials.gcp != null) { GOOGLE_APPLICATION_CREDENTIALS = "%d/gcp"; }
    // optionalAttrs (cfg.cloudCredentials.kubernetes != null) { KUBECONFIG = "%d/kubernetes"; };
  loadedClouds = lib.filter (c: c != "azure") configuredClouds;
  overriddenByCredentials = lib.filter (n: credentialEnv ? ${n}) (lib.attrNames (extraEnv // cfg.environment));

  # Files SkyPilot looks for under $HOME: copied from the loaded credential (mode 0600) at
  # each start. AWS too: SkyPilot's own AWS check looks at ~/.aws/credentials, not at
  # AWS_SHARED_CREDENTIALS_FILE (which boto3 reads), so both hold the credential.
  homeCredentialLinks =
    optional (cfg.cloudCredentials.aws != null)
      {
        dir = "${home}/.aws";
        file = "credentials";
        id = "aws";
      }
    ++ optional (cfg.cloudCredentials.lambda != null)
      {
        dir = "${home}/.lambda_cloud";
        file = "lambda_keys";
        id = "lambda";
      }
    ++ optional (cfg.cloudCredentials.runpod != null) {
      dir = "${home}/.runpod";
      file = "config.toml";
      id = "runpod";
    };

  # ---------------------------------------------------------------- SkyPilot config.yaml
  # The seed's example keys that are not SkyPilot keys: where `sky-config render` puts them.
  compatWarnings =
    let
      cloud = cfg.config.cloud or { };
      spot = cfg.config.spot or { };
      notBuilt =
        if policyEnabled
        then "the launch policy (skypilot-policy) applies it"
        else "it takes effect with the launch policy (services.skypilot.policy.enable and systemdServices)";
      cloudWarning = c: k:
        let
          path = "services.skypilot.config.cloud.${c}.${k}";
        in
        if k == "region" || k == "zone"
        then "${path} is not a SkyPilot config key (SkyPilot rejects it): a ${k} is a task resource (`infra: ${c}/...`), so it is left out of config.yaml and becomes the launch policy's default ${k} for ${c}; ${notBuilt}. Canonical option: services.skypilot.cluster.default${if k == "region" then "Region" else "Zone"}."
        else if c == "gcp" && k == "project"
        then "${path} is not a SkyPilot config key: SkyPilot calls it `workspaces.default.gcp.project_id`, where it was written in config.yaml. Canonical option: services.skypilot.config.workspaces.default.gcp.project_id."
        else "${path} is not understood (under `cloud.<cloud>` only region, zone and gcp's project are): `sky-config render` fails the build. SkyPilot's own per-cloud settings go at the top level, e.g. services.skypilot.config.${c}.${k}.";
    in
    lib.concatLists
      (lib.mapAttrsToList
        (c: v:
          if builtins.isAttrs v
          then map (cloudWarning c) (lib.attrNames v)
          else [ "services.skypilot.config.cloud.${c} is not an attribute set: `sky-config render` fails the build." ])
        cloud)
    ++ optional (spot ? enabled) "services.skypilot.config.spot.enabled is not a SkyPilot config key: spot is a task resource (`use_spot`), so it is left out of config.yaml and becomes the launch policy's default use_spot; ${notBuilt}. Canonical option: services.skypilot.cluster.useSpot."
    ++ optional (spot ? max_price) "services.skypilot.config.spot.max_price has no SkyPilot equivalent: it is left out of config.yaml and becomes the launch policy's price limit (instances whose catalog price per hour exceeds it are refused); ${notBuilt}. Canonical option: services.skypilot.cluster.maxHourlyPrice."
    ++ map (k: "services.skypilot.config.spot.${k} is not understood (only enabled and max_price are): `sky-config render` fails the build.")
      (lib.filter (k: k != "enabled" && k != "max_price") (lib.attrNames spot));

  # SkyPilot gives an identity it has not seen `rbac.default_role`, `admin` unless set
  # (sky/users/rbac.py). The gateway names every logged-in person, so the default here is
  # `viewer`, and the web UI sets each person's role to theirs. With SkyPilot's state in
  # PostgreSQL the file may hold one key only: there the web UI writes it into SkyPilot's
  # config in the database at start (docs/gateway.md).
  skyConfigWithRoles =
    if dbLocal || dbExternal then cfg.config
    else lib.recursiveUpdate { rbac.default_role = "viewer"; } cfg.config;
  skyConfigJson = pkgs.writeText "skypilot-config.json" (builtins.toJSON skyConfigWithRoles);
  # Rendered and validated at build time: a config SkyPilot would reject fails the build.
  # The output holds config.yaml and launch-policy.json (the settings SkyPilot's config
  # cannot express, for the launch-policy role).
  skyConfigDir =
    pkgs.runCommand "skypilot-config"
      {
        nativeBuildInputs = [ cfg.hostPackage ];
        SKYPILOT_CONFIG_SCHEMA = cfg.configSchema;
      } ''
      mkdir $out
      skypilot-host sky-config render --launch-defaults ${launchDefaultsJson} ${skyConfigJson} $out/config.yaml
      skypilot-host sky-config check $out/config.yaml
    '';

  # ---------------------------------------------------------------- host config
  hostConfigRaw = tomlFormat.generate "skypilot-host-unchecked.toml" cfg.settings;
  # `nixos-rebuild` fails here, not the service at start, when the host config is invalid.
  hostConfig =
    pkgs.runCommand "skypilot-host.toml"
      {
        nativeBuildInputs = [ cfg.hostPackage ];
      } ''
      skypilot-host check-config ${hostConfigRaw}
      cp ${hostConfigRaw} $out
    '';

  # One poll may take poll_deadline_secs in all; the manager feeds the watchdog between
  # its requests and between polls, so twice that is a hung loop, never a slow server.
  pollDeadline = cfg.settings.cluster_manager.poll_deadline_secs or 120;
  watchdogSec = 2 * pollDeadline;
  # The servers (monitor, launch policy, web UI) feed it from a task every half period:
  # silence for this long is a runtime whose threads are all stuck.
  serverWatchdogSec = 30;

  serverStart = "${serverInterpreter} -m sky.server.server --deploy --host 127.0.0.1 --port ${toString cfg.apiServer.port}";

  listenAddress = bracketed cfg.monitoring.listenAddress;
  monitorLoopback = builtins.elem cfg.monitoring.listenAddress [ "127.0.0.1" "::1" "localhost" ];

  # Hardening shared by every unit; each role adds or relaxes what it must.
  baseHardening = {
    User = cfg.user;
    Group = cfg.group;
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateMounts = true;
    DevicePolicy = "closed";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    RemoveIPC = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" "~@privileged" ];
    SystemCallErrorNumber = "EPERM";
    UMask = "0077";
  };
  # The Rust roles need even less: no other users, no W+X memory, own processes only.
  hostHardening =
    baseHardening
    // {
      PrivateUsers = true;
      MemoryDenyWriteExecute = true;
      ProcSubset = "pid";
      RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
      SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
      TimeoutStopSec = 30;
    };

  # The unit of a skypilot-host role, every one built here: `skypilot-host ROLE --config
  # <checked host config> ARGS` with the host hardening, restarted on failure unless a
  # oneshot; `notify`: it sends READY=1 once it serves (and STOPPING=1), `watchdog`: the
  # WatchdogSec it feeds; `loopbackOnly`: it talks to loopback only (IP rules);
  # `stateDir`: it reads or writes the host database; `connections`: a server taking up to
  # 4,096 connections (then it closes new ones at accept), plus its database and log files.
  # `unit` adds to the unit (wantedBy, after, ...), `service` to its serviceConfig.
  mkHostUnit =
    { role
    , description
    , notify ? true
    , watchdog ? null
    , loopbackOnly
    , stateDir ? true
    , connections ? false
    , args ? ""
    , unit ? { }
    , service ? { }
    }:
    unit
    // {
      inherit description;
      serviceConfig =
        hostHardening
        // {
          ExecStart = "${cfg.hostPackage}/bin/skypilot-host ${role} --config ${hostConfig}${args}";
        }
        // (if notify then {
          Type = "notify";
          NotifyAccess = "main";
          Restart = "on-failure";
          RestartSec = 5;
        } else { Type = "oneshot"; })
        // optionalAttrs (watchdog != null) { WatchdogSec = watchdog; }
        // optionalAttrs stateDir { ReadWritePaths = [ cfg.stateDir ]; }
        // optionalAttrs connections { LimitNOFILE = 8192; }
        // optionalAttrs loopbackOnly {
          IPAddressDeny = "any";
          IPAddressAllow = "localhost";
        }
        // service;
    };

  managedUnits =
    optional cfg.apiServer.enable "skypilot-api-server"
    ++ optional cfg.enableCluster "skypilot-cluster-manager"
    ++ optional cfg.monitoring.enable "skypilot-monitor"
    ++ optional cfg.policy.enable "skypilot-policy"
    ++ optional cfg.enableWebUI "skypilot-web-ui";
  systemctl = "/run/current-system/sw/bin/systemctl";

  # A path outside the store, as a string (a Nix path value would be copied to the store
  # when used). With a nixpkgs lib that has types.pathWith, the type itself refuses store
  # paths and relative paths; the assertions below say the same for an older lib.
  externalPath =
    if types ? pathWith
    then
      types.pathWith { inStore = false; absolute = true; }
      // {
        description = "absolute path outside the Nix store (the store is readable by every local user)";
      }
    else types.str;
  absPathOption = description:
    mkOption {
      type = types.nullOr externalPath;
      default = null;
      example = "/run/secrets/skypilot-cloud";
      inherit description;
    };

  # The module creates the user and group only when they are its defaults; any other name is
  # an account the configuration defines itself (or root, which the assertions refuse).
  defaultUser = "skypilot";
  defaultGroup = "skypilot";

  # Members of `group` as the configuration declares them (primary or extraGroups).
  groupMembers = lib.filterAttrs
    (n: u: n != cfg.user && (u.group or null == cfg.group || builtins.elem cfg.group (u.extraGroups or [ ])))
    config.users.users;
  membersWithoutUid = lib.attrNames (lib.filterAttrs (_: u: u.uid or null == null) groupMembers);
  memberUids = lib.sort (a: b: a < b) (lib.filter (x: x != null) (lib.mapAttrsToList (_: u: u.uid or null) groupMembers));

  sudoRsAvailable = options ? security && options.security ? sudo-rs;
  sudoRs = sudoRsAvailable && config.security.sudo-rs.enable;
  sudoRules = [
    {
      groups = [ cfg.group ];
      runAs = "root";
      commands = lib.concatMap
        (unit:
          map
            (verb: {
              command = "${systemctl} ${verb} ${unit}.service";
              options = [ "NOPASSWD" ];
            }) [ "start" "stop" "restart" "status" ])
        managedUnits;
    }
  ];
in
{
  options.services.skypilot = {
    enable = mkEnableOption "a team SkyPilot server (SkyPilot's API server and the skypilot-host services)";

    package = mkPackageOption pkgs "skypilot" {
      extraDescription = "It must provide `bin/sky` and `share/skypilot/config.schema.json` (see `configSchema`); the flake's module defaults it to SkyPilot 0.14.1, the version this module is tested against.";
    };

    hostPackage = mkPackageOption pkgs "skypilot-host" {
      extraDescription = "The host services (cluster manager, monitor, config and credential checks).";
    };

    clouds = mkOption {
      type = types.listOf (types.enum cloudNames);
      default = configuredClouds;
      defaultText = literalExpression "the clouds that have a cloudCredentials entry";
      example = [ "aws" "kubernetes" ];
      description = ''
        Clouds whose SDKs the API server gets: SkyPilot's extras for each (Python packages in
        the server's Python, e.g. boto3 and awscli for aws, the kubernetes client for
        kubernetes) and the programs SkyPilot runs (`aws`, `gcloud`, `kubectl`, `az`) on its
        PATH. The package must provide `serverPython` (the flake's SkyPilot does). A
        credential for a cloud not listed here, or a cloud whose SDK the nixpkgs revision
        lacks, gets a warning: SkyPilot would report that cloud as disabled.
      '';
    };

    configSchema = mkOption {
      type = types.str;
      default = "${cfg.package}/share/skypilot/config.schema.json";
      defaultText = literalExpression ''"''${config.services.skypilot.package}/share/skypilot/config.schema.json"'';
      description = "JSON schema of SkyPilot's config.yaml, exported by the SkyPilot in use (scripts/sky-schema.py); `config` is validated against it at build time.";
    };

    user = mkOption {
      type = types.str;
      default = defaultUser;
      description = "System user of every SkyPilot unit. The module creates it when it is the default (`skypilot`); any other name must be an account the configuration defines. Not root.";
    };

    group = mkOption {
      type = types.str;
      default = defaultGroup;
      description = "Group of the service. Members may use `sky` against this host's API server and, with `sudo.enable`, start and stop the SkyPilot units.";
    };

    uid = mkOption {
      type = types.nullOr types.int;
      default = null;
      example = 947;
      description = "Static uid of `user`. Needed with `networking.nftables.enable`, whose ruleset is checked at build time and so cannot name a user.";
    };

    gid = mkOption {
      type = types.nullOr types.int;
      default = null;
      example = 947;
      description = "Static gid of `group`. Needed with `networking.nftables.enable` (see `uid`).";
    };

    stateDir = mkOption {
      type = types.str;
      default = "/var/lib/skypilot";
      description = "State of the API server (`home/` is its HOME, `runtime/` its SKY_RUNTIME_DIR) and the host database.";
    };

    configDir = mkOption {
      type = types.str;
      default = "/var/lib/skypilot/config";
      description = "Configuration directory; `config.yaml` in it links to the rendered SkyPilot config.";
    };

    logsDir = mkOption {
      type = types.str;
      default = "/var/log/skypilot";
      description = "SkyPilot's launch and provisioning logs (its `~/sky_logs`). Service logs go to the journal.";
    };

    cacheDir = mkOption {
      type = types.str;
      default = "/var/cache/skypilot";
      description = "Cache directory of the API server (XDG_CACHE_HOME).";
    };

    enableWebUI = mkOption {
      type = types.bool;
      default = false;
      description = "Run the web UI (`skypilot-web-ui`): login, the host console, a JSON API and the authenticated gateway to SkyPilot. Beyond loopback it needs `webUI.usersFile` (or `webUI.tokensFile`).";
    };

    webUI = {
      port = mkOption {
        type = types.port;
        default = 8080;
        description = "Port of the web UI.";
      };
      host = mkOption {
        type = types.str;
        default = "127.0.0.1";
        example = "0.0.0.0";
        description = "Address the web UI binds to.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open `webUI.port` in the firewall (only when the web UI is enabled).";
      };
      usersFile = mkOption {
        type = types.nullOr externalPath;
        default = null;
        example = "/run/secrets/skypilot-web-users";
        description = "The users file, outside the Nix store: one `NAME:ARGON2ID-HASH:ROLE` line per person (`skypilot-host hash-password NAME --role admin` prints one). Loaded with systemd `LoadCredential`.";
      };
      tokensFile = mkOption {
        type = types.nullOr externalPath;
        default = null;
        description = "API tokens for scripts, outside the Nix store: `NAME:$blake2b$HEX:ROLE` lines (`skypilot-host make-token NAME` prints one). Loaded with `LoadCredential`.";
      };
      tlsCertFile = mkOption {
        type = types.nullOr externalPath;
        default = null;
        description = "PEM certificate chain: with `tlsKeyFile`, the web UI serves HTTPS itself (else put nginx with TLS in front and set `publicUrl`).";
      };
      tlsKeyFile = mkOption {
        type = types.nullOr externalPath;
        default = null;
        description = "PEM private key of `tlsCertFile`, outside the Nix store. Loaded with `LoadCredential`.";
      };
      publicUrl = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "https://sky.example.org";
        description = "The URL people use; `https://` marks the session cookie Secure behind a TLS-terminating proxy.";
      };
      passwordLogin = mkOption {
        type = types.bool;
        default = true;
        description = "Whether the people of `usersFile` may log in with their password (the console's form and Basic credentials). With `oidc.enable` it can be turned off, leaving single sign-on (API tokens still work for scripts).";
      };
      oidc = {
        enable = mkEnableOption "single sign-on with an OpenID Provider (Keycloak, Authentik, Dex, …) for the console, the gateway and `sky api login`";
        issuer = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "https://id.example.org/realms/team";
          description = "The provider's issuer URL (discovery at ISSUER/.well-known/openid-configuration); https:// unless on loopback. Register `<publicUrl>/console/oidc/callback` as the client's redirect URI and `<publicUrl>/console/login` as its post-logout redirect URI.";
        };
        clientId = mkOption {
          type = types.str;
          default = "skypilot";
          description = "Our client id at the provider.";
        };
        clientSecretFile = mkOption {
          type = types.nullOr externalPath;
          default = null;
          example = "/run/secrets/skypilot-oidc-client-secret";
          description = "The client secret, in a file outside the Nix store (loaded with `LoadCredential`); null for a public client.";
        };
        scopes = mkOption {
          type = types.listOf types.str;
          default = [ "profile" "email" "groups" ];
          description = "Scopes asked for besides `openid`.";
        };
        usernameClaim = mkOption {
          type = types.str;
          default = "preferred_username";
          example = "email";
          description = "The ID token claim that is the person's name (what SkyPilot records).";
        };
        groupsClaim = mkOption {
          type = types.str;
          default = "groups";
          description = "The ID token claim listing the person's groups.";
        };
        adminGroups = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Groups whose members are admins.";
        };
        userGroups = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Groups whose members are users (launch, act on what they own).";
        };
        viewerGroups = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Groups whose members are viewers (read only). A person in none of the three groups gets no access.";
        };
      };
    };

    enableCluster = mkOption {
      type = types.bool;
      default = false;
      description = "Run the cluster manager (`skypilot-cluster-manager`) and, with `cluster.autoStop`, the autostop enforcer.";
    };

    cluster = {
      autoStop = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        example = 60;
        description = "Idle minutes after which clusters stop: with `enableCluster`, the autostop enforcer (`skypilot-autostop`, a timer) makes sure every UP cluster carries SkyPilot's autostop at or below this, re-asserting it after a user cancels it (`settings.autostop` has the rest of the policy: exemptions, grace period, `enforce`; see docs/autostop.md).";
      };
      defaultInstanceType = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "m5.large";
        description = "Default instance type of launches that ask for no machine (no instance_type, cpus, memory or accelerators), where the task's cloud offers it (the launch policy).";
      };
      defaultZone = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "us-central1-a";
        description = "Default zone of launches, with `defaultRegion` (the launch policy).";
      };
      useSpot = mkOption {
        type = types.nullOr types.bool;
        default = null;
        description = "Default `use_spot` of launches that do not say (the launch policy).";
      };
      maxHourlyPrice = mkOption {
        type = types.nullOr (types.either types.ints.positive types.float);
        default = null;
        example = 1.0;
        description = "Refuse launches whose instance type's price per hour (USD) in SkyPilot's catalog exceeds this (spot price with use_spot), and set SkyPilot's own `max_hourly_cost` to it (the launch policy).";
      };
      defaultRegion = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "us-west-2";
        description = "Default region of launches that name none, where the task's cloud has it in SkyPilot's catalog (a task naming no cloud gets the one cloud whose catalog has it); `config.cloud.<c>.region` is the default for cloud c (the launch policy).";
      };
    };

    policy = {
      enable = mkOption {
        type = types.bool;
        default = launchSettings != [ ];
        defaultText = literalExpression "true when cluster.autoStop, defaultRegion, defaultZone, defaultInstanceType, useSpot, maxHourlyPrice or the seed's config.cloud.<c>.region/zone, config.spot.* is set";
        description = ''
          Run the launch policy (`skypilot-policy`, `skypilot-host policy`): SkyPilot's
          RESTful admin policy on a loopback port, named in SkyPilot's config as
          `admin_policy` with its token. Every launch then passes through it: autostop at
          most `cluster.autoStop` minutes, the default region, instance type and
          `use_spot`, and the price limit `cluster.maxHourlyPrice`.
        '';
      };
      port = mkOption {
        type = types.port;
        default = 9190;
        description = "Loopback port of the launch policy.";
      };
      tokenFile = absPathOption ''
        The launch policy's shared secret (letters, digits, `-._~`; at least 16), a path outside
        the Nix store, loaded with systemd `LoadCredential` by the policy and the API server.
        Null: a random token is created at first start in `stateDir/policy/token` (mode 0600).
      '';
      controllers = mkOption {
        type = types.bool;
        default = false;
        description = "Apply the launch policy to the launches of SkyPilot's own jobs and serve controllers too (by default they pass unchanged).";
      };
      configInput = mkOption {
        internal = true;
        readOnly = true;
        type = types.attrsOf types.anything;
        default = skyConfigWithRoles;
        description = "What `sky-config render` is given: `config`, with `rbac.default_role = \"viewer\"` unless set (or unless SkyPilot's state is in PostgreSQL).";
      };
      launchDefaults = mkOption {
        internal = true;
        readOnly = true;
        type = types.attrsOf types.anything;
        default = {
          region = cfg.cluster.defaultRegion;
          zone = cfg.cluster.defaultZone;
          instance_type = cfg.cluster.defaultInstanceType;
          use_spot = cfg.cluster.useSpot;
          max_hourly_price = cfg.cluster.maxHourlyPrice;
          autostop_idle_minutes = cfg.cluster.autoStop;
        };
        description = "The cluster.* launch options as `sky-config render --launch-defaults` reads them.";
      };
    };

    systemdServices = mkOption {
      type = types.bool;
      default = true;
      description = "Create the systemd units. When false, the module only installs SkyPilot, creates the user, group and directories and renders the configuration.";
    };

    apiServer = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run SkyPilot's API server on this host. With false, only the host roles run here,
          against the API server at `apiServer.url` (e.g. SkyPilot's Helm chart on
          Kubernetes), with the service-account token of `apiServer.tokenFile`: no local API
          server unit and no owner-match firewall rules.
        '';
      };
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "https://skypilot.example.com";
        description = "URL of the remote SkyPilot API server (http or https) when `apiServer.enable = false`; the host roles' `skypilot.api_url` and users' SKYPILOT_API_SERVER_ENDPOINT.";
      };
      tokenFile = absPathOption "A SkyPilot service-account token (`sky_…`) for the remote API server, outside the Nix store; handed to the cluster manager with `LoadCredential` and sent as a bearer token.";
      caFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/etc/ssl/skypilot-ca.pem";
        description = "PEM file of the CA that signed the remote API server's certificate, trusted in addition to the system's roots (`skypilot.ca_file`). Not a secret: a store path is fine.";
      };
      port = mkOption {
        type = types.port;
        default = 46580;
        description = "Loopback port of SkyPilot's API server. Never opened in the firewall.";
      };
      hostName = mkOption {
        type = types.str;
        default = "skypilot-api";
        description = ''
          Name of this host's API server for users' `sky` (SKYPILOT_API_SERVER_ENDPOINT), added
          to `networking.hosts` as 127.0.0.1. Not an address: SkyPilot's client treats
          127.0.0.1, localhost and ::1 as a server on the same machine, which reads workdirs
          from the user's home instead of receiving them, and the service cannot read homes.
        '';
      };
      restrictAccess = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Refuse connections to the API server's port from every local account except the
          service user, root and (with `allowGroup`) members of `group`, with an owner match on
          the loopback interface. The API server trusts an identity header from anyone and
          treats a loopback request without one as an admin, so this should stay on.
        '';
      };
      allowGroup = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Let members of `group` connect to the API server, so that their `sky` works. They are
          SkyPilot admins then. A member is an account whose primary group or `extraGroups`
          holds `group`. Both firewalls let every member in: iptables matches the connecting
          process's groups (`--gid-owner --suppl-groups`); nftables, whose ruleset is checked at
          build time and sees only the primary gid (`meta skgid`), also accepts the uids of the
          members declared in `users.users` (`meta skuid`), so with nftables every member needs
          a static `uid` (a warning names those without one). With `enableWebUI` the group
          is not let in: users' `sky` goes through the web UI's gateway instead.
        '';
      };
      enableUsageCollection = mkOption {
        type = types.bool;
        default = false;
        description = "Let SkyPilot send usage telemetry (off: SKYPILOT_DISABLE_USAGE_COLLECTION=1).";
      };
      stopTimeout = mkOption {
        type = types.ints.positive;
        default = 30;
        description = "Seconds the API server's processes get to stop before the whole cgroup is killed.";
      };
    };

    monitoring = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = "Run the monitor (`skypilot-monitor`): Prometheus metrics of the fleet and of the host services.";
      };
      metricsPort = mkOption {
        type = types.port;
        default = 9188;
        description = "Port of the monitor's `/metrics`. Not 9090, which is Prometheus's own port.";
      };
      listenAddress = mkOption {
        type = types.str;
        default =
          if cfg.monitoring.openFirewall
          then "0.0.0.0"
          else "127.0.0.1";
        defaultText = literalExpression ''if config.services.skypilot.monitoring.openFirewall then "0.0.0.0" else "127.0.0.1"'';
        description = "Address of the monitor's listener.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open `monitoring.metricsPort` in the firewall.";
      };
      logLevel = mkOption {
        type = types.enum [ "DEBUG" "INFO" "WARNING" "ERROR" ];
        default = "INFO";
        description = "Log level of the skypilot-host services.";
      };
    };

    sudo.enable = mkOption {
      type = types.bool;
      default = false;
      description = "Let members of `group` run `systemctl start|stop|restart|status` on the SkyPilot units through sudo, and nothing else.";
    };

    database = {
      createLocally = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Keep SkyPilot's state in a local PostgreSQL (`services.postgresql` with a database
          and role named after `user`), reached over the Unix socket with peer
          authentication: no password exists. The API server starts after PostgreSQL.
        '';
      };
      uriFile = absPathOption ''
        A file outside the Nix store holding the SQLAlchemy URI of an external PostgreSQL
        for SkyPilot's state (e.g. `postgresql+psycopg2://skypilot:PASSWORD@db.example.com/skypilot`).
        Handed to the API server with `LoadCredential` and exported as
        SKYPILOT_DB_CONNECTION_URI by its start script; never in the store, a unit file or
        the log. SkyPilot's `db` config key must not be used instead (`sky-config render`
        refuses it).
      '';
    };

    backup = {
      enable = mkEnableOption ''
        scheduled backups of SkyPilot's state (its databases, or its PostgreSQL database with
        `pg_dump`), the SSH keys that reach its clusters, and the host database, while SkyPilot
        keeps serving (`skypilot-backup.service` on `skypilot-backup.timer`). Each backup is a
        directory `skypilot-backup-<UTC>` under `backup.directory`, mode 0700, files 0600. It
        holds secrets: the SSH private keys of every person's clusters. The monitor reports
        the newest backup's age and size. Restore with `skypilot-host restore` (docs/nixos.md)'';
      directory = mkOption {
        type = externalPath;
        default = "/var/backup/skypilot";
        description = "Where the backups go (made mode 0700 for `user`). Outside the Nix store: backups hold SSH private keys.";
      };
      startAt = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = "daily";
        example = "*-*-* 03:15:00";
        description = ''
          When to back up (systemd.time(7) calendar events, `OnCalendar`); a missed run is made
          up at the next boot (`Persistent`). `hourly`, `daily` and `weekly` also set the
          monitor's schedule (`settings.backup.interval_secs`, whose alert fires when the
          newest backup is older than twice it); for another calendar set that too.
        '';
      };
      keep = mkOption {
        type = types.ints.unsigned;
        default = 7;
        description = "Backups kept; the oldest beyond are removed after each backup (0: keep all).";
      };
    };

    config = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      example = literalExpression ''{ allowed_clouds = [ "aws" "kubernetes" ]; }'';
      description = ''
        SkyPilot's `config.yaml`, rendered and validated against SkyPilot's own schema at build
        time. The seed's compatibility keys (`cloud.<c>.region`/`zone`, `cloud.gcp.project`,
        `spot.*`) are mapped with a warning that says where each went.
      '';
    };

    settings = mkOption {
      type = types.submodule { freeformType = tomlFormat.type; };
      default = { };
      description = "The skypilot-host config (TOML; see `skypilot-host check-config`). The module fills in what its options decide.";
    };

    cloudCredentials = lib.genAttrs cloudNames (c:
      absPathOption (
        "Credential of ${c}, a path outside the Nix store, loaded with systemd `LoadCredential` (read by PID 1, so it may stay root-only)."
        + lib.optionalString (c == "azure") " Azure's CLI state is a directory: it is bind-mounted as the service's `~/.azure` and must be owned by the service user."
      ));

    extraEnvironment = mkOption {
      type = types.lines;
      default = "";
      example = "export AWS_PROFILE=skypilot";
      description = "`export NAME=value` lines for the API server, turned into `Environment=` entries at evaluation; any other line is an error.";
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Extra environment of the API server.";
    };

    environmentFile = absPathOption "An `EnvironmentFile=` of the API server for secrets (outside the Nix store).";

  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions =
        [
          {
            assertion = (cfg.webUI.tlsCertFile == null) == (cfg.webUI.tlsKeyFile == null);
            message = "services.skypilot.webUI.tlsCertFile and .tlsKeyFile go together: set both or neither.";
          }
          {
            assertion = !oidc.enable || (oidc.issuer != null
            && (lib.hasPrefix "https://" oidc.issuer || oidcIssuerLoopback));
            message = "services.skypilot.webUI.oidc.issuer must be an https:// URL (http:// only for a provider on loopback), got ${toString oidc.issuer}.";
          }
          {
            assertion = !oidc.enable || (oidc.adminGroups ++ oidc.userGroups ++ oidc.viewerGroups) != [ ];
            message = "services.skypilot.webUI.oidc: adminGroups, userGroups and viewerGroups are all empty, so nobody could log in: list the provider's groups that map to each role.";
          }
          {
            assertion = cfg.webUI.passwordLogin || oidc.enable;
            message = "services.skypilot.webUI.passwordLogin = false needs webUI.oidc.enable: nobody could log in otherwise.";
          }
          {
            assertion = !unitsEnabled || hasServerPython;
            message = "services.skypilot.package has no `serverPython` (a function from Python package names to a Python with SkyPilot and them, as the flake's SkyPilot 0.14.1 provides): the API server is started as `python -m sky.server.server`, so the module needs SkyPilot's Python.";
          }
          {
            assertion = !(cfg.sudo.enable && unitsEnabled && !sudoRs && !config.security.sudo.enable);
            message = "services.skypilot.sudo.enable needs security.sudo.enable or security.sudo-rs.enable: its rules would go nowhere.";
          }
          {
            assertion = cfg.user != "root" && cfg.group != "root";
            message = "services.skypilot.user and .group must not be root: the API server runs untrusted requests.";
          }
          {
            assertion = cfg.monitoring.metricsPort != cfg.apiServer.port;
            message = "services.skypilot.monitoring.metricsPort (${toString cfg.monitoring.metricsPort}) is the API server's port.";
          }
          {
            assertion = !(localApi && cfg.apiServer.restrictAccess && config.networking.nftables.enable && (cfg.uid == null || cfg.gid == null));
            message = "services.skypilot.uid and .gid must be set with networking.nftables.enable: the API server's port is restricted by owner in an nftables ruleset, which is checked at build time and cannot name users.";
          }
          {
            assertion = !(localApi && cfg.apiServer.restrictAccess && !config.networking.nftables.enable && !config.networking.firewall.enable);
            message = "services.skypilot.apiServer.restrictAccess needs networking.firewall.enable or networking.nftables.enable: without an owner match every local account can reach the API server, which treats loopback requests as an admin.";
          }
          {
            assertion = !(cfg.policy.tokenFile != null && inStore cfg.policy.tokenFile);
            message = "services.skypilot.policy.tokenFile is in the Nix store, which every local user can read: give the path of a file outside the store.";
          }
          {
            assertion = !(policyEnabled && cfg.config ? admin_policy);
            message = "services.skypilot.config.admin_policy is set, but the launch policy (services.skypilot.policy.enable) sets SkyPilot's admin_policy itself: remove one of them.";
          }
          {
            assertion = !(policyEnabled && builtins.elem cfg.policy.port [ cfg.apiServer.port cfg.monitoring.metricsPort ]);
            message = "services.skypilot.policy.port (${toString cfg.policy.port}) is the API server's or the monitor's port.";
          }
          {
            assertion = !(cfg.settings ? skypilot && cfg.settings.skypilot ? token_file && inStore cfg.settings.skypilot.token_file);
            message = "services.skypilot.settings.skypilot.token_file is in the Nix store, which every local user can read: give the path of a file outside the store.";
          }
        ]
        ++ lib.concatMap
          (c: secretFileAssertions {
            option = "cloudCredentials.${c}";
            path = cfg.cloudCredentials.${c};
            advice = ": a credential there is published. Give the path of a file outside the store (e.g. /run/secrets/${c}, managed by sops-nix or agenix).";
          })
          configuredClouds
        ++ lib.concatMap (f: secretFileAssertions { option = "webUI.${f.option}"; inherit (f) path; }) webUIFiles
        ++ optionals (cfg.environmentFile != null) (secretFileAssertions { option = "environmentFile"; path = cfg.environmentFile; })
        ++ map
          (message: {
            assertion = false;
            inherit message;
          })
          extraEnvErrors
        # Scale-out: SkyPilot's state in PostgreSQL, or the API server elsewhere.
        ++ [
          {
            assertion = !(dbLocal && dbExternal);
            message = "services.skypilot.database.createLocally and database.uriFile are both set: choose the local PostgreSQL or the external one.";
          }
          {
            assertion = !(remoteApi && (dbLocal || dbExternal));
            message = "services.skypilot.database.* configures the local API server's state, but apiServer.enable = false: the remote API server keeps its own state (its Helm chart's apiService.dbConnectionSecretName).";
          }
          {
            assertion = !((dbLocal || dbExternal) && cfg.apiServer.enable && builtins.length renderedTopKeys > 1);
            message = "services.skypilot.config has ${toString (builtins.length renderedTopKeys)} top-level keys (${lib.concatStringsSep ", " renderedTopKeys}), but with its state in PostgreSQL SkyPilot 0.14.1 refuses a config file of more than one (\"If db config is specified, no other config is allowed\"): keep one key here and set the rest in SkyPilot's dashboard, which stores them in the database.";
          }
          {
            assertion = !(remoteApi && (autostopEnabled || webUIEnabled));
            message = "services.skypilot.apiServer.enable = false (a remote SkyPilot): in this version the autostop enforcer (cluster.autoStop) and the web UI (enableWebUI) work with the local API server only; run them on the API server's host, or set cluster.autoStop = null and enableWebUI = false here.";
          }
          {
            assertion = !remoteApi || cfg.apiServer.url != null;
            message = "services.skypilot.apiServer.enable = false needs apiServer.url: the SkyPilot API server the host roles talk to.";
          }
          {
            assertion = cfg.apiServer.url == null || builtins.match "https?://[^/[:space:]]+.*" cfg.apiServer.url != null;
            message = "services.skypilot.apiServer.url = \"${toString cfg.apiServer.url}\" is not an http:// or https:// URL.";
          }
        ]
        ++ optionals dbExternal (secretFileAssertions {
          option = "database.uriFile";
          path = cfg.database.uriFile;
          advice = ": the URI holds the database password. Give the path of a file outside the store.";
        })
        ++ optionals (cfg.apiServer.tokenFile != null) (secretFileAssertions { option = "apiServer.tokenFile"; path = cfg.apiServer.tokenFile; })
        ++ optionals cfg.backup.enable (secretFileAssertions {
          option = "backup.directory";
          path = cfg.backup.directory;
          advice = ": backups hold the SSH private keys of every cluster. Give a directory outside the store.";
        });

      warnings =
        compatWarnings
        ++ optional (webUIEnabled && cfg.webUI.usersFile == null && cfg.webUI.tokensFile == null && !oidc.enable) "services.skypilot.webUI has no usersFile: at its first start the web UI creates one admin, `admin`, with a random password in ${cfg.stateDir}/web-ui-initial-admin (readable by ${cfg.user} and root only; read it with `sudo cat ${cfg.stateDir}/web-ui-initial-admin`). Configure real users: lines of `skypilot-host hash-password NAME --role admin|user|viewer` in a file outside the Nix store, named by services.skypilot.webUI.usersFile; the generated admin is then disabled."
        ++ map (n: "services.skypilot: ${n} set in extraEnvironment/environment is ignored: cloudCredentials sets it to the credential systemd loads for the API server.") overriddenByCredentials
        ++ lib.optionals (!policyEnabled) (map (o: "services.skypilot.cluster.${o} is a launch-policy setting, but the launch policy does not run (services.skypilot.policy.enable or systemdServices is false): it has no effect.")
          (lib.filter (o: cfg.cluster.${o} != null) [ "defaultRegion" "defaultInstanceType" "defaultZone" "useSpot" "maxHourlyPrice" ]))
        ++ optional (cfg.cluster.autoStop != null && !cfg.enableCluster) (if policyEnabled
        then "services.skypilot.cluster.autoStop has no effect without services.skypilot.enableCluster on running clusters (the autostop enforcer needs the cluster manager's state); the launch policy still applies it to new launches."
        else "services.skypilot.cluster.autoStop has no effect without services.skypilot.enableCluster.")
        ++ optional (cfg.monitoring.metricsPort == 9090) "services.skypilot.monitoring.metricsPort = 9090 is Prometheus's own port (and SkyPilot's metrics port): a Prometheus on this host will not start."
        ++ optional (!cfg.systemdServices && (cfg.enableCluster || cfg.monitoring.enable)) "services.skypilot.systemdServices is false: enableCluster and monitoring.enable create no units."
        ++ optional (cfg.monitoring.openFirewall && monitorLoopback) "services.skypilot.monitoring.openFirewall opens port ${toString cfg.monitoring.metricsPort}, but the monitor listens on ${cfg.monitoring.listenAddress} only."
        ++ optional (localApi && !cfg.apiServer.restrictAccess) "services.skypilot.apiServer.restrictAccess is false: every local account can connect to the API server, which treats a loopback request without an identity header as an admin, so every local account is a SkyPilot admin."
        ++ optional (localApi && cfg.apiServer.restrictAccess && groupMayConnect && config.networking.nftables.enable && membersWithoutUid != [ ]) "services.skypilot.apiServer.allowGroup with nftables: ${lib.concatStringsSep ", " membersWithoutUid} (members of ${cfg.group}) have no static uid, so the build-time nftables ruleset cannot name them and they are refused. Give them users.users.<name>.uid."
        ++ optional (cfg.apiServer.enable && (cfg.apiServer.url != null || cfg.apiServer.tokenFile != null || cfg.apiServer.caFile != null)) "services.skypilot.apiServer.url, tokenFile and caFile are for a remote API server (apiServer.enable = false): with the local one they are ignored."
        ++ optional (remoteApi && cfg.apiServer.url != null && lib.hasPrefix "http://" cfg.apiServer.url && cfg.apiServer.tokenFile != null) "services.skypilot.apiServer.url is http://: the service-account token crosses the network in clear text. Use https://."
        ++ optional (remoteApi && cfg.apiServer.tokenFile == null) "services.skypilot.apiServer.tokenFile is not set: the host roles call the remote API server without credentials, which a server with authentication refuses."
        ++ map (c: "services.skypilot.cloudCredentials.${c} is set but ${c} is not in services.skypilot.clouds: the API server has no ${c} SDK, so SkyPilot reports ${c} as disabled. Add \"${c}\" to services.skypilot.clouds.") credentialsWithoutSdk
        ++ map (c: "services.skypilot.clouds has ${c}, but this nixpkgs lacks part of its SDK (${lib.concatStringsSep ", " (map (n: "python3Packages.${n}") (cloudPythonMissing c) ++ cloudToolsMissing c)}): SkyPilot may report ${c} as disabled.") cloudsMissingParts;

      services.skypilot.settings = {
        skypilot =
          {
            api_url = mkDefault (if cfg.apiServer.enable then apiUrl else cfg.apiServer.url);
          }
          // optionalAttrs (remoteApi && cfg.apiServer.tokenFile != null) {
            token_file = mkDefault (credentialPath "skypilot-cluster-manager" "token");
          }
          // optionalAttrs (remoteApi && cfg.apiServer.caFile != null) {
            ca_file = mkDefault cfg.apiServer.caFile;
          };
        cluster_manager = {
          database = mkDefault "${cfg.stateDir}/host.db";
          poll_interval_secs = mkDefault 30;
        }
        // optionalAttrs cfg.apiServer.enable {
          # The local API server's CPU, for the load budget: its unit's cgroup.
          api_server_cgroup = mkDefault "/sys/fs/cgroup/system.slice/skypilot-api-server.service";
        };
        monitor.listen = mkDefault "${listenAddress}:${toString cfg.monitoring.metricsPort}";
        web_ui =
          {
            listen = mkDefault "${webUIHost}:${toString cfg.webUI.port}";
            skypilot_config_file = mkDefault "${skyConfigDir}/config.yaml";
            # The names users reach the gateway by (beside publicUrl's, localhost and IP
            # addresses); any other Host is refused (DNS rebinding).
            allowed_hosts = mkDefault ([ cfg.apiServer.hostName ]
              ++ lib.optional ((config.networking.hostName or "") != "") config.networking.hostName);
          }
          // optionalAttrs (cfg.webUI.publicUrl != null) { public_url = mkDefault cfg.webUI.publicUrl; }
          // optionalAttrs (!cfg.webUI.passwordLogin) { password_login = false; }
          // optionalAttrs oidc.enable {
            # The provider sends people back here: the URL users reach the gateway by.
            public_url = mkDefault gatewayUrl;
            oidc = {
              inherit (oidc) issuer scopes;
              client_id = oidc.clientId;
              username_claim = oidc.usernameClaim;
              groups_claim = oidc.groupsClaim;
              admin_groups = oidc.adminGroups;
              user_groups = oidc.userGroups;
              viewer_groups = oidc.viewerGroups;
            };
          };
        backup = mkIf cfg.backup.enable ({
          directory = mkDefault cfg.backup.directory;
          keep = mkDefault cfg.backup.keep;
          interval_secs = mkDefault backupInterval;
          sky_home = mkDefault home;
          sky_runtime_dir = mkDefault runtimeDir;
          # SkyPilot's config.yaml is not taken: the module renders it (into the store, or
          # at each start with the policy's token), and with a database SkyPilot keeps the
          # dashboard's edits there.
        }
        // optionalAttrs (cfg.package ? version) { skypilot_version = mkDefault cfg.package.version; }
        // optionalAttrs dbLocal { database_uri = mkDefault localDbUri; }
        // optionalAttrs (dbLocal || dbExternal) {
          pg_dump = mkDefault "${pgPackage}/bin/pg_dump";
          pg_restore = mkDefault "${pgPackage}/bin/pg_restore";
        });
        credentials = lib.genAttrs configuredClouds (c: cfg.cloudCredentials.${c});
        log.level = mkDefault cfg.monitoring.logLevel;
        policy = mkMerge [
          {
            # SkyPilot's catalog under the API server's SKY_RUNTIME_DIR: the launch
            # policy's prices, and the cluster manager's for what the cost report lacks.
            catalog_dir = mkDefault "${runtimeDir}/.sky/catalogs/v8";
          }
          (mkIf policyEnabled {
            listen = mkDefault "127.0.0.1:${toString cfg.policy.port}";
            launch_policy = mkDefault "${skyConfigDir}/launch-policy.json";
            token_file = mkDefault policyTokenPath;
            create_token = mkDefault policyTokenGenerated;
            controllers = mkDefault cfg.policy.controllers;
          })
        ];
      }
      // optionalAttrs (cfg.cluster.autoStop != null) {
        autostop.idle_minutes = mkDefault cfg.cluster.autoStop;
      };

      users.users = mkIf (cfg.user == defaultUser) {
        ${defaultUser} =
          {
            isSystemUser = true;
            group = cfg.group;
            home = home;
            description = "SkyPilot API server and host services";
          }
          // optionalAttrs (cfg.uid != null) { uid = cfg.uid; };
      };
      users.groups = mkIf (cfg.group == defaultGroup) {
        ${defaultGroup} = optionalAttrs (cfg.gid != null) { gid = cfg.gid; };
      };

      systemd.tmpfiles.rules = [
        "d ${cfg.stateDir} 0750 ${cfg.user} ${cfg.group} - -"
        "d ${home} 0700 ${cfg.user} ${cfg.group} - -"
        "d ${runtimeDir} 0700 ${cfg.user} ${cfg.group} - -"
        "d ${cfg.configDir} 0750 ${cfg.user} ${cfg.group} - -"
        "d ${cfg.logsDir} 0750 ${cfg.user} ${cfg.group} - -"
        "d ${cfg.cacheDir} 0700 ${cfg.user} ${cfg.group} - -"
        "L+ ${cfg.configDir}/config.yaml - - - - ${skyConfigDir}/config.yaml"
        "L+ ${home}/sky_logs - - - - ${cfg.logsDir}"
      ]
      ++ optional (policyEnabled && policyTokenGenerated) "d ${cfg.stateDir}/policy 0700 ${cfg.user} ${cfg.group} - -";

      environment.etc."skypilot-host/config.toml".source = hostConfig;
      environment.systemPackages = [ cfg.package cfg.hostPackage ];
    }

    (mkIf (unitsEnabled && remoteApi && cfg.apiServer.url != null) {
      # `sky` of every user talks to the remote server and never starts one of its own.
      environment.variables =
        {
          SKYPILOT_API_SERVER_ENDPOINT = cfg.apiServer.url;
          SKYPILOT_DISABLE_LOCAL_API_SERVER = "1";
        }
        // optionalAttrs (!cfg.apiServer.enableUsageCollection) { SKYPILOT_DISABLE_USAGE_COLLECTION = "1"; };
    })

    (mkIf (localApi && dbLocal) {
      services.postgresql = {
        enable = true;
        ensureDatabases = [ cfg.user ];
        ensureUsers = [
          {
            name = cfg.user;
            ensureDBOwnership = true;
          }
        ];
      };
    })

    (mkIf localApi {
      # `sky` of every user talks to this host's server and never starts one of its own.
      environment.variables =
        {
          SKYPILOT_API_SERVER_ENDPOINT = usersEndpoint;
          SKYPILOT_DISABLE_LOCAL_API_SERVER = "1";
        }
        // optionalAttrs (!cfg.apiServer.enableUsageCollection) { SKYPILOT_DISABLE_USAGE_COLLECTION = "1"; };

      systemd.services.skypilot-api-server = {
        description = "SkyPilot API server";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ] ++ optional policyEnabled "skypilot-policy.service";
        # postgresql-setup.service, where newer NixOS creates the ensured database and role.
        after = [ "network-online.target" ]
          ++ optionals dbLocal [ "postgresql.service" "postgresql-setup.service" ]
          ++ optional policyEnabled "skypilot-policy.service";
        requires = optional dbLocal "postgresql.service";
        # SkyPilot runs ssh and rsync to reach its clusters, and the clouds' programs; `sky`
        # and the Python SDKs' programs (e.g. `aws`) come with the server's Python.
        path = [ pkgs.openssh pkgs.rsync ] ++ optional hasServerPython serverPython ++ cloudToolPackages;
        environment =
          escapeSpecifiers (extraEnv // cfg.environment)
          // {
            HOME = home;
            SKY_RUNTIME_DIR = runtimeDir;
            # With the launch policy: a copy with admin_policy and its token, written at
            # each start (ExecStartPre) and read-only for the server (ReadOnlyPaths).
            SKYPILOT_GLOBAL_CONFIG =
              if policyEnabled
              then "${policyRuntimeDir}/config.yaml"
              else "${skyConfigDir}/config.yaml";
            XDG_CACHE_HOME = cfg.cacheDir;
            # What `sky api start --foreground --port N` sets before it runs the server.
            IS_SKYPILOT_SERVER = "true";
            SKYPILOT_API_SERVER_LOCAL_PORT = toString cfg.apiServer.port;
          }
          // optionalAttrs (!cfg.apiServer.enableUsageCollection) { SKYPILOT_DISABLE_USAGE_COLLECTION = "1"; }
          // optionalAttrs dbLocal { SKYPILOT_DB_CONNECTION_URI = localDbUri; }
          // credentialEnv;
        # With an external database the URI is read from the credential at start and
        # exported for the server alone (NixOS runs `script` as ExecStart, with bash -e).
        script = mkIf dbExternal ''
          SKYPILOT_DB_CONNECTION_URI=$(< "$CREDENTIALS_DIRECTORY/db-uri")
          export SKYPILOT_DB_CONNECTION_URI
          exec ${serverStart}
        '';
        serviceConfig =
          baseHardening
          // {
            Type = "simple";
            ExecStartPre =
              optional (configuredClouds != [ ]) "+${cfg.hostPackage}/bin/skypilot-host credentials check --config ${hostConfig}"
              ++ optional policyEnabled "${cfg.hostPackage}/bin/skypilot-host policy --config ${hostConfig} sky-config ${lib.optionalString (!policyTokenGenerated) "--token-file %d/policy-token "}${skyConfigDir}/config.yaml ${policyRuntimeDir}/config.yaml"
              # Copies, not links into /run/credentials: SkyPilot uploads these files to
              # clusters with `rsync -a`, which would deliver a dangling link.
              ++ lib.concatMap
                (l: [
                  "${pkgs.coreutils}/bin/rm -f ${l.dir}/${l.file}"
                  "${pkgs.coreutils}/bin/install -D -m 0600 -T %d/${l.id} ${l.dir}/${l.file}"
                ])
                homeCredentialLinks;
            # The copies live only while the server runs.
            ExecStopPost = map (l: "${pkgs.coreutils}/bin/rm -f ${l.dir}/${l.file}") homeCredentialLinks;
            # The server module itself, as `sky api start --deploy --foreground` runs it, but
            # with the host kept: `sky api start --deploy` replaces any --host with 0.0.0.0.
            # --deploy keeps the deploy-mode worker sizing.
            ExecStart = mkIf (!dbExternal) serverStart;
            # SIGTERM to the main process orphans SkyPilot's executors: stop the whole cgroup.
            KillMode = "control-group";
            TimeoutStopSec = cfg.apiServer.stopTimeout;
            Restart = "on-failure";
            RestartSec = 10;
            ReadWritePaths = [ cfg.stateDir cfg.logsDir cfg.cacheDir ];
            # SkyPilot runs /bin/bash (its subprocess and command runners), which NixOS lacks.
            BindReadOnlyPaths = [ "${pkgs.bash}/bin/bash:/bin/bash" ];
            RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
            # SkyPilot forks ssh and its executors and reads /proc/meminfo: no ProcSubset,
            # no MemoryDenyWriteExecute (libffi closures in cloud SDKs).
          }
          // optionalAttrs (loadedClouds != [ ] || dbExternal || (policyEnabled && !policyTokenGenerated)) {
            LoadCredential =
              map (c: "${c}:${cfg.cloudCredentials.${c}}") loadedClouds
              ++ optional dbExternal "db-uri:${cfg.database.uriFile}"
              ++ optional (policyEnabled && !policyTokenGenerated) "policy-token:${cfg.policy.tokenFile}";
          }
          // optionalAttrs policyEnabled {
            RuntimeDirectory = "skypilot-api-server";
            RuntimeDirectoryMode = "0700";
            ReadOnlyPaths = [ "-${policyRuntimeDir}/config.yaml" ];
          }
          // optionalAttrs (cfg.cloudCredentials.azure != null) {
            BindPaths = [ "${cfg.cloudCredentials.azure}:${home}/.azure" ];
          }
          // optionalAttrs (cfg.environmentFile != null) {
            EnvironmentFile = cfg.environmentFile;
          };
      };

      networking.hosts."127.0.0.1" = [ cfg.apiServer.hostName ];

      # The API server trusts an identity header from anyone and treats a loopback request
      # without one as an admin: only the service user, root and (optionally) the group may
      # open a connection to its port.
      networking.firewall = mkIf (cfg.apiServer.restrictAccess && !config.networking.nftables.enable) {
        extraCommands =
          let
            p = toString cfg.apiServer.port;
          in
          ''
            iptables -w -N skypilot-api 2>/dev/null || true
            iptables -w -F skypilot-api
            iptables -w -A skypilot-api -m owner --uid-owner ${cfg.user} -j RETURN
            iptables -w -A skypilot-api -m owner --uid-owner 0 -j RETURN
            ${lib.optionalString groupMayConnect "iptables -w -A skypilot-api -m owner --gid-owner ${cfg.group} --suppl-groups -j RETURN"}
            iptables -w -A skypilot-api -p tcp -j REJECT --reject-with tcp-reset
            iptables -w -C OUTPUT -o lo -p tcp --dport ${p} -j skypilot-api 2>/dev/null \
              || iptables -w -I OUTPUT -o lo -p tcp --dport ${p} -j skypilot-api
          '';
        extraStopCommands = ''
          iptables -w -D OUTPUT -o lo -p tcp --dport ${toString cfg.apiServer.port} -j skypilot-api 2>/dev/null || true
          iptables -w -F skypilot-api 2>/dev/null || true
          iptables -w -X skypilot-api 2>/dev/null || true
        '';
      };

      networking.nftables.tables = mkIf (cfg.apiServer.restrictAccess && config.networking.nftables.enable) {
        skypilot-api = {
          family = "inet";
          content = ''
            chain output {
              type filter hook output priority filter; policy accept;
              oifname "lo" tcp dport ${toString cfg.apiServer.port} meta skuid { 0, ${toString cfg.uid} } accept
              ${lib.optionalString groupMayConnect "oifname \"lo\" tcp dport ${toString cfg.apiServer.port} meta skgid ${toString cfg.gid} accept"}
              ${lib.optionalString (groupMayConnect && memberUids != [ ]) "oifname \"lo\" tcp dport ${toString cfg.apiServer.port} meta skuid { ${lib.concatMapStringsSep ", " toString memberUids} } accept"}
              oifname "lo" tcp dport ${toString cfg.apiServer.port} reject with tcp reset
            }
          '';
        };
      };
    })

    (mkIf clusterManagerEnabled {
      systemd.services.skypilot-cluster-manager = mkHostUnit {
        role = "cluster-manager";
        description = "SkyPilot cluster manager (skypilot-host)";
        watchdog = watchdogSec;
        # With the local API server it talks to loopback only.
        loopbackOnly = cfg.apiServer.enable;
        unit = {
          wantedBy = [ "multi-user.target" ];
          wants = [ (if cfg.apiServer.enable then "skypilot-api-server.service" else "network-online.target") ];
          after = [ (if cfg.apiServer.enable then "skypilot-api-server.service" else "network-online.target") ];
        };
        service = optionalAttrs (remoteApi && cfg.apiServer.tokenFile != null) {
          LoadCredential = [ "token:${cfg.apiServer.tokenFile}" ];
        };
      };
    })

    (mkIf monitorEnabled {
      systemd.services.skypilot-monitor = mkHostUnit {
        role = "monitor";
        description = "SkyPilot host monitor (skypilot-host)";
        watchdog = serverWatchdogSec;
        loopbackOnly = monitorLoopback;
        # stateDir (the default): it reads the host database, and SQLite's WAL needs the
        # -shm file writable.
        connections = true;
        unit = {
          wantedBy = [ "multi-user.target" ];
          after = [ "skypilot-cluster-manager.service" ];
        };
      };
    })

    # One pass per timer tick: a oneshot holds no memory between passes and reopens the
    # database each time; the pass's lock keeps a slow pass and the next tick (or a manual
    # run) from overlapping.
    (mkIf autostopEnabled {
      systemd.services.skypilot-autostop = mkHostUnit {
        role = "autostop";
        description = "SkyPilot autostop enforcer, one pass (skypilot-host)";
        notify = false;
        # It only talks to the API server on loopback; appends to the host database's
        # audit table and takes <database>.autostop.lock.
        loopbackOnly = true;
        unit = {
          wants = [ "skypilot-cluster-manager.service" ];
          after = [ "skypilot-cluster-manager.service" ];
        };
        # A pass with many actions waits on SkyPilot for each (4 at a time).
        service.TimeoutStartSec = 1800;
      };
      systemd.timers.skypilot-autostop = {
        description = "SkyPilot autostop enforcer, every ${toString autostopInterval} s";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnBootSec = 120;
          OnUnitInactiveSec = autostopInterval;
          AccuracySec = 10;
          Unit = "skypilot-autostop.service";
        };
      };
    })

    # A backup per timer tick; skypilot-host takes a lock, so a manual run and the
    # timer's never overlap.
    (mkIf backupEnabled {
      systemd.services.skypilot-backup = mkHostUnit {
        role = "backup";
        description = "Backup of SkyPilot's state and the host database (skypilot-host)";
        notify = false;
        # It asks the local API server its version; an external PostgreSQL is elsewhere.
        loopbackOnly = !dbExternal;
        # The URI with its password comes from the credential, never the store.
        args = lib.optionalString dbExternal " --database-uri-file %d/db-uri";
        unit = {
          after = optional cfg.apiServer.enable "skypilot-api-server.service"
            ++ optional clusterManagerEnabled "skypilot-cluster-manager.service"
            ++ optionals dbLocal [ "postgresql.service" ];
        };
        service =
          {
            # stateDir: a reader of a live WAL database writes its -shm (and the lock);
            # nothing else there is written.
            ReadWritePaths = [ cfg.stateDir cfg.backup.directory ];
            TimeoutStartSec = 3600;
          }
          // optionalAttrs dbExternal { LoadCredential = [ "db-uri:${cfg.database.uriFile}" ]; };
      };
      systemd.timers.skypilot-backup = {
        description = "SkyPilot backup, ${if builtins.isString cfg.backup.startAt then cfg.backup.startAt else lib.concatStringsSep ", " cfg.backup.startAt}";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = cfg.backup.startAt;
          Persistent = true;
          # Also 5 minutes after the timer starts (at boot, or when backups are first
          # enabled): the first backup does not wait for the calendar, and the monitor's
          # alert does not fire on a fresh install.
          OnActiveSec = "5min";
          Unit = "skypilot-backup.service";
        };
      };
      systemd.tmpfiles.rules = [ "d ${cfg.backup.directory} 0700 ${cfg.user} ${cfg.group} -" ];
    })

    (mkIf policyEnabled {
      systemd.services.skypilot-policy = mkHostUnit {
        role = "policy";
        description = "SkyPilot launch policy (skypilot-host)";
        watchdog = serverWatchdogSec;
        # Only SkyPilot's API server on loopback talks to it.
        loopbackOnly = true;
        # It reads SkyPilot's catalog under the API server's state (read-only, as all of
        # the system is here) and writes only a token it creates.
        stateDir = false;
        unit = {
          wantedBy = [ "multi-user.target" ];
          # Before the API server, which names it in its config.
          before = [ "skypilot-api-server.service" ];
        };
        service =
          if policyTokenGenerated
          then { ReadWritePaths = [ "${cfg.stateDir}/policy" ]; }
          else { LoadCredential = [ "policy-token:${cfg.policy.tokenFile}" ]; };
      };
    })

    (mkIf webUIEnabled {
      systemd.services.skypilot-web-ui = mkHostUnit {
        role = "web-ui";
        description = "SkyPilot web UI (skypilot-host)";
        watchdog = serverWatchdogSec;
        loopbackOnly = webUILoopback;
        # stateDir (the default): it reads the host database and writes its audit entries
        # and sessions.
        connections = true;
        # The secret files come from systemd's credentials directory (%d).
        args = lib.concatMapStrings (f: " ${f.flag} %d/${f.id}") webUIFiles;
        unit = {
          wantedBy = [ "multi-user.target" ];
          wants = [ "skypilot-api-server.service" ];
          after = [ "skypilot-api-server.service" "skypilot-cluster-manager.service" ];
        };
        service = optionalAttrs (webUIFiles != [ ]) {
          LoadCredential = map (f: "${f.id}:${f.path}") webUIFiles;
        };
      };
    })

    {
      networking.firewall.allowedTCPPorts =
        optional (webUIEnabled && cfg.webUI.openFirewall) cfg.webUI.port
        ++ optional (monitorEnabled && cfg.monitoring.openFirewall) cfg.monitoring.metricsPort;
    }

    # The same rules for sudo or sudo-rs, whichever the system uses.
    (mkIf (cfg.sudo.enable && unitsEnabled && !sudoRs) {
      security.sudo.extraRules = sudoRules;
    })
    (mkIf (cfg.sudo.enable && unitsEnabled && sudoRs) (optionalAttrs sudoRsAvailable {
      security.sudo-rs.extraRules = sudoRules;
    }))
  ]);
}
