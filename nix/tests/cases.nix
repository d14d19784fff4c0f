# Configurations evaluated by the checks (nix/tests/check.py holds what each must produce).
{
  seed-basic = import ./cases/seed-basic.nix;
  seed-advanced = import ./cases/seed-advanced.nix;

  # The advanced example without the role that is not built yet.
  seed-advanced-buildable = { lib, ... }: {
    imports = [ ./cases/seed-advanced.nix ];
    services.skypilot = {
      enableWebUI = lib.mkForce false;
    };
  };

  # Every role that exists and a cloud credential: nix/tests/run_rendered.py runs what this
  # renders against SkyPilot itself.
  run-roles = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      monitoring.enable = true;
      cloudCredentials.aws = "/run/secrets/aws-credentials";
      # The autostop enforcer (no grace period, so the run's fresh cluster is acted on)
      # and the launch policy, with a token it creates.
      settings.autostop.grace_minutes = 0;
      # The web UI, with a users file the run makes with hash-password.
      enableWebUI = true;
      webUI.usersFile = "/run/secrets/web-users";
      # Single sign-on against the provider nix/tests/run_rendered.py starts there.
      webUI.oidc = {
        enable = true;
        issuer = "http://127.0.0.1:47801";
        clientSecretFile = "/run/secrets/oidc-client-secret";
        userGroups = [ "sky-users" ];
      };
      # Backups: the run takes one with the rendered unit and checks a restore --dry-run.
      backup.enable = true;
      cluster = {
        autoStop = 60;
        defaultRegion = "us-west-2";
        defaultInstanceType = "m5.large";
        useSpot = false;
        maxHourlyPrice = 1;
      };
    };
  };

  # The launch policy with a token from a credential, applied to the controllers too.
  policy-token-file = {
    services.skypilot = {
      enable = true;
      cluster.maxHourlyPrice = 2.5;
      policy = {
        tokenFile = "/run/secrets/skypilot-policy-token";
        controllers = true;
        port = 9300;
      };
    };
  };

  # Launch settings without the policy: each one named as having no effect.
  policy-off = {
    services.skypilot = {
      enable = true;
      cluster.defaultRegion = "us-west-2";
      cluster.useSpot = true;
      policy.enable = false;
    };
  };

  # admin_policy both in config and from the launch policy; the policy on the API port.
  policy-conflicts = {
    services.skypilot = {
      enable = true;
      cluster.useSpot = true;
      config.admin_policy = "http://example.invalid/policy";
      policy.port = 46580;
    };
  };

  policy-token-store-path = {
    services.skypilot = {
      enable = true;
      policy.enable = true;
      policy.tokenFile = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-token";
    };
  };

  # The seed key and the module option disagree: `sky-config render` refuses it.
  policy-seed-conflict = {
    services.skypilot = {
      enable = true;
      cluster.useSpot = false;
      config.spot.enabled = true;
    };
  };

  disabled = {
    services.skypilot.enable = false;
  };

  custom-user-dirs = {
    # Accounts other than the defaults are the configuration's own.
    users.users.sky-svc = {
      isSystemUser = true;
      group = "sky-ops";
      home = "/srv/skypilot/state/home";
    };
    users.groups.sky-ops = { };
    services.skypilot = {
      enable = true;
      enableCluster = true;
      user = "sky-svc";
      group = "sky-ops";
      stateDir = "/srv/skypilot/state";
      configDir = "/srv/skypilot/config";
      logsDir = "/srv/skypilot/logs";
      cacheDir = "/srv/skypilot/cache";
      apiServer.port = 47000;
    };
  };

  # root as NixOS declares it: the module's own message, not a conflicting definition.
  user-root = {
    users.users.root = {
      uid = 0;
      group = "root";
      home = "/root";
      description = "System administrator";
    };
    services.skypilot = {
      enable = true;
      user = "root";
    };
  };

  # An account the configuration defines: used as it is, not redefined.
  existing-user = {
    users.users.alice = {
      isNormalUser = true;
      group = "users";
      home = "/home/alice";
      uid = 1000;
    };
    services.skypilot = {
      enable = true;
      user = "alice";
    };
  };

  # nftables sees the primary gid only: members through extraGroups are accepted by uid.
  nftables-members = {
    networking.nftables.enable = true;
    users.users.alice = {
      isNormalUser = true;
      uid = 1001;
      extraGroups = [ "skypilot" ];
    };
    users.users.bob = {
      isNormalUser = true;
      extraGroups = [ "skypilot" ];
    };
    users.users.carol = {
      isNormalUser = true;
      uid = 1003;
    };
    services.skypilot = {
      enable = true;
      uid = 947;
      gid = 947;
    };
  };

  # A credential whose cloud's SDK is not asked for; kubernetes with its SDK.
  credential-without-sdk = {
    services.skypilot = {
      enable = true;
      cloudCredentials.aws = "/run/secrets/aws";
      cloudCredentials.kubernetes = "/run/secrets/kubeconfig";
      clouds = [ "kubernetes" ];
    };
  };

  restrict-access-off = {
    services.skypilot = {
      enable = true;
      apiServer.restrictAccess = false;
    };
  };

  sudo-rs = {
    security.sudo.enable = false;
    security.sudo-rs.enable = true;
    services.skypilot = {
      enable = true;
      sudo.enable = true;
    };
  };

  sudo-none = {
    security.sudo.enable = false;
    services.skypilot = {
      enable = true;
      sudo.enable = true;
    };
  };

  monitoring-open-firewall = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      monitoring = {
        enable = true;
        openFirewall = true;
        metricsPort = 9300;
        logLevel = "DEBUG";
      };
      settings.cluster_manager.poll_interval_secs = 45;
      settings.cluster_manager.poll_deadline_secs = 90;
    };
  };

  monitoring-loopback = {
    services.skypilot = {
      enable = true;
      monitoring.enable = true;
    };
  };

  credentials = {
    services.skypilot = {
      enable = true;
      cloudCredentials = {
        aws = "/run/secrets/aws";
        gcp = "/run/secrets/gcp.json";
        azure = "/var/lib/skypilot-secrets/azure";
        kubernetes = "/run/secrets/kubeconfig";
        lambda = "/run/secrets/lambda_keys";
        runpod = "/run/secrets/runpod.toml";
      };
      extraEnvironment = ''
        # a comment, then a blank line

        export AWS_PROFILE=skypilot
        SKY_PLAIN=value
        export SINGLE='two words $HOME'
        export DOUBLE="say \"hi\" for 100%"
        export GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp.json
      '';
      environment.FROM_ATTRS = "yes";
      environmentFile = "/run/secrets/skypilot.env";
    };
  };

  credential-store-path = {
    services.skypilot = {
      enable = true;
      cloudCredentials.aws = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-aws-credentials";
      cloudCredentials.gcp = "relative/gcp.json";
    };
  };

  environment-file-store-path = {
    services.skypilot = {
      enable = true;
      environmentFile = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-env";
    };
  };

  extra-environment-bad-line = {
    services.skypilot = {
      enable = true;
      extraEnvironment = ''
        export GOOD=1
        source /etc/profile
        export UNQUOTED=two words
        export EXPANDS="$HOME/x"
      '';
    };
  };

  no-systemd-services = {
    services.skypilot = {
      enable = true;
      systemdServices = false;
      enableCluster = true;
      monitoring.enable = true;
      monitoring.openFirewall = true;
      sudo.enable = true;
    };
  };

  sudo-rules = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      sudo.enable = true;
    };
  };

  nftables = {
    networking.nftables.enable = true;
    services.skypilot = {
      enable = true;
      uid = 947;
      gid = 947;
    };
  };

  nftables-without-uid = {
    networking.nftables.enable = true;
    services.skypilot.enable = true;
  };

  firewall-off = {
    networking.firewall.enable = false;
    services.skypilot.enable = true;
  };

  closed-to-group = {
    services.skypilot = {
      enable = true;
      apiServer.allowGroup = false;
      apiServer.enableUsageCollection = true;
    };
  };

  web-ui = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      enableWebUI = true;
      webUI = {
        host = "0.0.0.0";
        port = 8443;
        openFirewall = true;
        usersFile = "/run/secrets/web-users";
        tokensFile = "/run/secrets/web-tokens";
        tlsCertFile = "/run/secrets/web.crt";
        tlsKeyFile = "/run/secrets/web.key";
      };
    };
  };

  web-ui-loopback = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
    };
  };

  web-ui-no-users = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI.host = "0.0.0.0";
      webUI.openFirewall = true;
    };
  };

  web-ui-oidc = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI = {
        host = "0.0.0.0";
        publicUrl = "https://sky.example.org";
        usersFile = "/run/secrets/web-users";
        passwordLogin = false;
        oidc = {
          enable = true;
          issuer = "https://id.example.org/realms/team";
          clientSecretFile = "/run/secrets/oidc-client-secret";
          usernameClaim = "email";
          adminGroups = [ "platform" ];
          userGroups = [ "ml" "research" ];
          viewerGroups = [ "finance" ];
        };
      };
    };
  };

  web-ui-oidc-bad = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI.oidc = {
        enable = true;
        issuer = "http://id.example.org";
      };
    };
  };

  web-ui-no-login = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI.passwordLogin = false;
    };
  };

  web-ui-oidc-secret-in-store = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI.oidc = {
        enable = true;
        issuer = "https://id.example.org";
        clientSecretFile = "/nix/store/00000000000000000000000000000000-secret";
        userGroups = [ "ml" ];
      };
    };
  };

  web-ui-store-path = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI.usersFile = "/nix/store/00000000000000000000000000000000-users";
    };
  };

  autostop = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      cluster.autoStop = 30;
    };
  };

  autostop-without-cluster = {
    services.skypilot = {
      enable = true;
      cluster.autoStop = 30;
    };
  };

  bad-host-settings = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      settings.cluster_manager.poll_interval_secs = 0;
    };
  };

  # SkyPilot's own keys pass through; checked with SkyPilot's schema when it is available.
  sky-config-native = {
    services.skypilot = {
      enable = true;
      config = {
        allowed_clouds = [ "aws" "gcp" ];
        aws.labels.team = "ml";
        workspaces.default.aws.profile = "default";
        jobs.controller.resources.cpus = "4+";
        api_server.requests_retention_hours = 24;
      };
    };
  };

  # `aws.region` is not a SkyPilot key: evaluation passes, the build-time render refuses it.
  bad-sky-config = {
    services.skypilot = {
      enable = true;
      config.aws.region = "us-west-2";
    };
  };

  # ---- scale-out: SkyPilot's state in PostgreSQL, the host roles against a remote server
  # A local PostgreSQL over its Unix socket (peer authentication, no password).
  database-local = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      database.createLocally = true;
      config.allowed_clouds = [ "aws" ];
    };
  };

  # An external PostgreSQL: the URI (with its password) only in a file outside the store.
  # nix/tests/run_rendered.py runs this case against a throwaway PostgreSQL.
  # The web UI without a users file: it makes one admin at first start, and writes
  # SkyPilot's rbac.default_role into SkyPilot's config in the database.
  run-database = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      monitoring.enable = true;
      enableWebUI = true;
      database.uriFile = "/run/secrets/skypilot-db-uri";
      # pg_dump of the external database, its URI from the credential.
      backup.enable = true;
    };
  };

  # Backups of the SQLite state on a calendar of their own, and of a local PostgreSQL.
  backup = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      monitoring.enable = true;
      backup = {
        enable = true;
        directory = "/srv/backup/sky";
        startAt = "hourly";
        keep = 24;
      };
    };
  };
  backup-database-local = {
    services.skypilot = {
      enable = true;
      database.createLocally = true;
      backup.enable = true;
    };
  };
  backup-in-store = {
    services.skypilot = {
      enable = true;
      backup.enable = true;
      backup.directory = "/nix/store/00000000000000000000000000000000-backups";
    };
  };

  database-uri-in-store = {
    services.skypilot = {
      enable = true;
      database.uriFile = "/nix/store/00000000000000000000000000000000-db-uri";
    };
  };

  # SkyPilot refuses a config file of more than one key once its state is in a database.
  database-config-keys = {
    services.skypilot = {
      enable = true;
      database.createLocally = true;
      config = {
        allowed_clouds = [ "aws" ];
        jobs.bucket = "s3://team-jobs";
      };
    };
  };

  # Only the host roles, against SkyPilot elsewhere (e.g. its Helm chart) over https.
  remote-api-server = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      monitoring.enable = true;
      apiServer = {
        enable = false;
        url = "https://skypilot.example.com";
        tokenFile = "/run/secrets/skypilot-token";
        caFile = "/etc/ssl/skypilot-ca.pem";
      };
    };
  };

  # The roles that act need the local API server in this version: refused with a reason.
  remote-api-server-acting-roles = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      cluster.autoStop = 60;
      enableWebUI = true;
      apiServer = {
        enable = false;
        url = "https://skypilot.example.com";
        tokenFile = "/run/secrets/skypilot-token";
      };
    };
  };

  remote-api-server-without-url = {
    services.skypilot = {
      enable = true;
      enableCluster = true;
      apiServer.enable = false;
      database.createLocally = true;
    };
  };

  # The web UI's gateway: users' sky goes through it; the API server's port is closed to the
  # group (iptables and nftables), with a member who would otherwise be let in.
  web-ui-gateway = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI = { host = "0.0.0.0"; port = 8443; usersFile = "/run/secrets/skypilot-users"; };
    };
  };
  web-ui-gateway-nftables = {
    networking.nftables.enable = true;
    users.users.alice = {
      isNormalUser = true;
      uid = 1001;
      extraGroups = [ "skypilot" ];
    };
    users.users.bob = {
      isNormalUser = true;
      extraGroups = [ "skypilot" ];
    };
    services.skypilot = {
      enable = true;
      uid = 947;
      gid = 947;
      enableWebUI = true;
      webUI.host = "10.0.0.5";
      webUI.usersFile = "/run/secrets/skypilot-users";
    };
  };
  web-ui-gateway-public-url = {
    services.skypilot = {
      enable = true;
      enableWebUI = true;
      webUI.publicUrl = "https://sky.example.org/";
    };
  };
}
