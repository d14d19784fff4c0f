# NixOS VM test of `services.skypilot`: one subtest per scenario of the Testing list of the
# module's documentation. Run with
#   nix build .#checks.x86_64-linux.skypilot-module
# (flake.nix passes this file to pkgs.testers.runNixOSTest).
let
  # A well-formed AWS credentials file with AWS's documented example keys: it must reach
  # the API server through LoadCredential and never be readable by other users or logged.
  awsKeyId = "AKIAIOSFODNN7EXAMPLE";
  awsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
in
{
  name = "skypilot-module";

  nodes = {
    # The team server: API server, cluster manager, monitor on loopback, sudo rules, one
    # cloud credential; alice is in the group, mallory is not.
    server = { config, pkgs, ... }: {
      imports = [ ../nix/nixos-module.nix ];
      virtualisation.memorySize = 4096;
      virtualisation.cores = 2;
      virtualisation.diskSize = 4096;

      services.skypilot = {
        enable = true;
        enableCluster = true;
        monitoring.enable = true;
        sudo.enable = true;
        cloudCredentials.aws = "/run/secrets/aws-credentials";
        extraEnvironment = ''
          export AWS_PROFILE=default
        '';
        enableWebUI = true;
        webUI.usersFile = "/run/secrets/web-users";
      };

      users.users.alice = {
        isNormalUser = true;
        extraGroups = [ "skypilot" ];
      };
      users.users.mallory.isNormalUser = true;

      # The secret comes from outside the store, as sops-nix or agenix would provide it.
      systemd.services.test-secrets = {
        description = "Test secret for the API server";
        requiredBy = [ "skypilot-api-server.service" "skypilot-web-ui.service" ];
        before = [ "skypilot-api-server.service" "skypilot-web-ui.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        script = ''
          install -d -m 0700 /run/secrets
          umask 077
          printf '[default]\naws_access_key_id = ${awsKeyId}\naws_secret_access_key = ${awsSecret}\n' \
            > /run/secrets/aws-credentials
          echo 'web-test-password' | ${config.services.skypilot.hostPackage}/bin/skypilot-host hash-password webadmin --role admin \
            > /run/secrets/web-users
        '';
      };

      environment.systemPackages = [ pkgs.curl pkgs.jq pkgs.sqlite pkgs.rsync ];
    };

    # Other user, group and directories; metrics opened to the network on a custom port.
    custom = { pkgs, ... }: {
      imports = [ ../nix/nixos-module.nix ];
      virtualisation.memorySize = 3072;
      virtualisation.cores = 2;

      # Accounts other than the module's defaults are the configuration's own.
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
        monitoring = {
          enable = true;
          openFirewall = true;
          metricsPort = 9300;
          logLevel = "DEBUG";
        };
      };

      environment.systemPackages = [ pkgs.curl ];
    };

    # The nftables path of the owner match: bob is in the group through extraGroups only
    # (nftables sees the primary gid, so the module accepts members by their static uid).
    # The seed's advanced example's web UI: on every address, no usersFile.
    openui = { pkgs, ... }: {
      imports = [ ../nix/nixos-module.nix ];
      virtualisation.memorySize = 3072;
      virtualisation.cores = 2;
      services.skypilot = {
        enable = true;
        enableWebUI = true;
        webUI.host = "0.0.0.0";
      };
      users.users.eve = {
        isNormalUser = true;
        uid = 1002;
      };
      environment.systemPackages = [ pkgs.curl ];
    };

    nft = { pkgs, ... }: {
      imports = [ ../nix/nixos-module.nix ];
      virtualisation.memorySize = 3072;
      virtualisation.cores = 2;
      networking.nftables.enable = true;

      services.skypilot = {
        enable = true;
        uid = 947;
        gid = 947;
      };

      users.users.bob = {
        isNormalUser = true;
        uid = 1001;
        extraGroups = [ "skypilot" ];
      };
      users.users.eve = {
        isNormalUser = true;
        uid = 1002;
      };
      environment.systemPackages = [ pkgs.curl ];
    };
  };

  testScript = ''
    import json
    import re

    SAMPLE = re.compile(r"^(?P<series>[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?) (?P<value>[-+]?([0-9.eE+-]+|NaN|Inf))( -?[0-9]+)?$")


    def parse_metrics(text):
        """Prometheus text format: every line a comment or a sample.
        Returns {series: value}, series being the name with its labels."""
        samples = {}
        for line in text.splitlines():
            if not line or line == "# EOF" or line.startswith(("# HELP ", "# TYPE ", "# UNIT ")):
                continue
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample: {line!r}"
            samples[m.group("series")] = float(m.group("value"))
        assert samples, "the scrape has no sample"
        return samples


    def stat(machine, path):
        return machine.succeed(f"stat -c '%U %G %a' {path}").strip()


    def as_user(user, command):
        return f"su - {user} -c '{command}'"


    def unit_listeners(machine, unit):
        """Listening sockets (ss -ltunp) of every process in the unit's cgroup."""
        cgroup = machine.succeed(f"systemctl show -p ControlGroup --value {unit}").strip()
        pids = set(machine.succeed(f"cat /sys/fs/cgroup{cgroup}/cgroup.procs").split())
        assert pids, f"{unit} has no process"
        lines = [l for l in machine.succeed("ss -ltunpH").splitlines() if l.strip()]
        return [l for l in lines if set(re.findall(r"pid=(\d+)", l)) & pids]


    def loopback_only(lines):
        addrs = [l.split()[4].rsplit(":", 1)[0].split("%")[0] for l in lines]
        return all(a.startswith("127.") or a == "[::1]" for a in addrs)


    start_all()

    with subtest("Basic installation and configuration"):
        server.wait_for_unit("multi-user.target")
        assert "0.14.1" in server.succeed("sky --version"), "SkyPilot 0.14.1 is installed"
        server.succeed("skypilot-host --version")
        server.succeed("id skypilot")
        assert "skypilot" in server.succeed("id -Gn alice").split()
        server.succeed("skypilot-host check-config /etc/skypilot-host/config.toml")
        server.succeed("test -L /var/lib/skypilot/config/config.yaml")
        server.succeed("test -r /var/lib/skypilot/config/config.yaml")
        env = server.succeed("systemctl show -p Environment skypilot-api-server.service")
        assert "SKYPILOT_DISABLE_USAGE_COLLECTION=1" in env, env
        assert "SKY_RUNTIME_DIR=/var/lib/skypilot/runtime" in env, env
        assert "AWS_PROFILE=default" in env, env
        assert "AWS_SHARED_CREDENTIALS_FILE=/run/credentials/skypilot-api-server.service/aws" in env or "AWS_SHARED_CREDENTIALS_FILE=%d/aws" in env, env

    with subtest("Service functionality"):
        server.wait_for_unit("skypilot-api-server.service")
        server.wait_for_open_port(46580, "127.0.0.1")
        server.wait_until_succeeds("curl -sf http://127.0.0.1:46580/api/health", timeout=180)
        health = json.loads(server.succeed("curl -sf http://127.0.0.1:46580/api/health"))
        assert health["status"] == "healthy", health
        # Loopback only, although --deploy is given: every listening socket of every
        # process of the unit (uvicorn workers, the request queue, executors).
        listeners = unit_listeners(server, "skypilot-api-server.service")
        assert any("127.0.0.1:46580" in l for l in listeners), listeners
        assert loopback_only(listeners), listeners
        # NixOS has no /bin/bash; SkyPilot runs it, so the unit gets one.
        server.fail("test -e /bin/bash")
        pid = server.succeed("systemctl show -p MainPID --value skypilot-api-server.service").strip()
        server.succeed(f"nsenter -t {pid} -m -- /bin/bash -c true")
        # Type=notify: active means the cluster manager has sent READY=1.
        server.wait_for_unit("skypilot-cluster-manager.service")
        server.wait_until_succeeds("runuser -u skypilot -- skypilot-host status --json --config /etc/skypilot-host/config.toml", timeout=120)
        status = json.loads(server.succeed("runuser -u skypilot -- skypilot-host status --json --config /etc/skypilot-host/config.toml"))
        assert status["clusters"] == [], status
        assert status["database"] == "/var/lib/skypilot/host.db", status
        # Stopping kills the whole cgroup: no SkyPilot executor survives.
        server.succeed("systemctl stop skypilot-api-server.service")
        server.fail("pgrep -f 'sky[.]server[.]server'")
        server.succeed("systemctl start skypilot-api-server.service")
        server.wait_until_succeeds("curl -sf http://127.0.0.1:46580/api/health", timeout=180)

    with subtest("Web UI"):
        server.wait_for_unit("skypilot-web-ui.service")
        server.wait_for_open_port(8080, "127.0.0.1")
        assert loopback_only(unit_listeners(server, "skypilot-web-ui.service"))
        # A stranger is refused: the API answers 401, pages send to the login.
        code = server.succeed("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/v1/clusters").strip()
        assert code == "401", code
        loc = server.succeed("curl -s -o /dev/null -w '%{redirect_url}' http://127.0.0.1:8080/console/clusters").strip()
        assert "/console/login" in loc, loc
        code = server.succeed("curl -s -o /dev/null -w '%{http_code}' -u webadmin:wrong http://127.0.0.1:8080/api/v1/clusters").strip()
        assert code == "401", code
        # Logging in through the form: the login page's CSRF cookie and field, then the session.
        server.succeed("curl -s -c /tmp/jar -o /tmp/login.html http://127.0.0.1:8080/console/login")
        token = server.succeed("grep -o 'name=\"csrf_token\" value=\"[^\"]*' /tmp/login.html | cut -d'\"' -f4").strip()
        code = server.succeed(
            "curl -s -b /tmp/jar -c /tmp/jar -o /dev/null -w '%{http_code}' "
            f"--data-urlencode username=webadmin --data-urlencode password=web-test-password --data-urlencode csrf_token={token} "
            "http://127.0.0.1:8080/console/login"
        ).strip()
        assert code == "303", code
        clusters = json.loads(server.succeed("curl -sf -b /tmp/jar http://127.0.0.1:8080/api/v1/clusters"))
        assert clusters["clusters"] == [], clusters
        server.succeed("curl -sf -b /tmp/jar http://127.0.0.1:8080/console/ | grep -q webadmin")

        # The seed's open web UI with no usersFile: one generated admin, readable by the
        # service and root only, logged where it is (never the password), made once.
        openui.wait_for_unit("skypilot-web-ui.service")
        openui.wait_until_succeeds("curl -sf --max-time 5 http://127.0.0.1:8080/healthz", timeout=120)
        secret = "/var/lib/skypilot/web-ui-initial-admin"
        openui.succeed(f"test \"$(stat -c '%a %U' {secret})\" = '600 skypilot'")
        openui.fail(as_user("eve", f"cat {secret}"))
        password = openui.succeed(f"cat {secret}").strip()
        assert len(password) >= 24, password
        code = openui.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' -u admin:{password} http://127.0.0.1:8080/api/v1/clusters").strip()
        assert code == "200", code
        code = openui.succeed("curl -s -o /dev/null -w '%{http_code}' -u admin:wrong http://127.0.0.1:8080/api/v1/clusters").strip()
        assert code == "401", code
        # An unauthenticated request is refused, and the malformed bearer that SkyPilot
        # would take for no credentials is too.
        code = openui.succeed("curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer  sky_x' http://127.0.0.1:8080/users/role").strip()
        assert code == "401", code
        journal = openui.succeed("journalctl -u skypilot-web-ui.service")
        assert secret in journal, "the log names the password file"
        assert password not in journal, "the password is in the log"
        openui.systemctl("restart skypilot-web-ui.service")
        openui.wait_until_succeeds("curl -sf --max-time 5 http://127.0.0.1:8080/healthz", timeout=120)
        assert openui.succeed(f"cat {secret}").strip() == password, "a second admin was made"

    with subtest("Monitoring"):
        # Type=notify: active means the monitor sent READY=1.
        server.wait_for_unit("skypilot-monitor.service")
        server.wait_for_open_port(9188, "127.0.0.1")
        assert loopback_only(unit_listeners(server, "skypilot-monitor.service"))
        samples = parse_metrics(server.succeed("curl -sf http://127.0.0.1:9188/metrics"))
        assert samples.get("skypilot_host_database_up") == 1.0, samples
        # The cluster manager has checked the API server's health and the monitor says so.
        server.wait_until_succeeds("curl -sf http://127.0.0.1:9188/metrics | grep -qx 'skypilot_api_server_up 1'", timeout=180)
        parse_metrics(server.succeed("curl -sf http://127.0.0.1:9188/metrics"))
        # Not opened on the server (monitoring.openFirewall is false there) ...
        custom.wait_for_unit("multi-user.target")
        custom.fail("curl -sf --max-time 5 http://server:9188/metrics")
        # ... but opened on custom, which listens beyond loopback on port 9300.
        custom.wait_for_unit("skypilot-monitor.service")
        custom.wait_for_open_port(9300, "127.0.0.1")
        server.wait_until_succeeds("curl -sf --max-time 5 http://custom:9300/metrics", timeout=120)
        remote = parse_metrics(server.succeed("curl -sf --max-time 5 http://custom:9300/metrics"))
        assert "skypilot_host_database_up" in remote, remote

    with subtest("Custom configurations"):
        assert "sky-ops" in custom.succeed("id -Gn sky-svc").split()
        custom.fail("id skypilot")
        assert stat(custom, "/srv/skypilot/state") == "sky-svc sky-ops 750"
        assert stat(custom, "/srv/skypilot/state/home") == "sky-svc sky-ops 700"
        assert stat(custom, "/srv/skypilot/config") == "sky-svc sky-ops 750"
        assert stat(custom, "/srv/skypilot/logs") == "sky-svc sky-ops 750"
        assert stat(custom, "/srv/skypilot/cache") == "sky-svc sky-ops 700"
        custom.wait_for_unit("skypilot-api-server.service")
        custom.wait_until_succeeds("runuser -u sky-svc -- curl -sf http://127.0.0.1:46580/api/health", timeout=180)
        pid = custom.succeed("systemctl show -p MainPID --value skypilot-api-server.service").strip()
        assert custom.succeed(f"ps -o user= -p {pid}").strip() == "sky-svc"
        custom.wait_for_unit("skypilot-cluster-manager.service")
        custom.succeed("test -f /srv/skypilot/state/host.db")
        assert "DEBUG" in custom.succeed("cat /etc/skypilot-host/config.toml")

    with subtest("Security and permissions"):
        assert stat(server, "/var/lib/skypilot") == "skypilot skypilot 750"
        assert stat(server, "/var/lib/skypilot/home") == "skypilot skypilot 700"
        assert stat(server, "/var/lib/skypilot/runtime") == "skypilot skypilot 700"
        assert stat(server, "/var/cache/skypilot") == "skypilot skypilot 700"
        assert stat(server, "/var/log/skypilot") == "skypilot skypilot 750"
        assert stat(server, "/var/lib/skypilot/host.db").startswith("skypilot skypilot 6")
        # The API server's port: the service user, root and the group only.
        server.succeed("runuser -u skypilot -- curl -sf --max-time 5 http://127.0.0.1:46580/api/health")
        server.succeed(as_user("alice", "curl -sf --max-time 5 http://127.0.0.1:46580/api/health"))
        server.fail(as_user("mallory", "curl -s --max-time 5 http://127.0.0.1:46580/api/health"))
        custom.fail("curl -s --max-time 5 http://server:46580/api/health")
        # The same with nftables: bob is a member through extraGroups, eve is not.
        nft.wait_for_unit("skypilot-api-server.service")
        nft.wait_until_succeeds("curl -sf --max-time 5 http://127.0.0.1:46580/api/health", timeout=180)
        nft.succeed("runuser -u skypilot -- curl -sf --max-time 5 http://127.0.0.1:46580/api/health")
        nft.succeed(as_user("bob", "curl -sf --max-time 5 http://skypilot-api:46580/api/health"))
        nft.fail(as_user("eve", "curl -s --max-time 5 http://skypilot-api:46580/api/health"))
        assert loopback_only(unit_listeners(nft, "skypilot-api-server.service"))
        # The credential under the service's HOME is a 0600 copy, and rsync -a (as SkyPilot
        # uploads it to clusters) delivers the credential, not a link into /run/credentials.
        assert stat(server, "/var/lib/skypilot/home/.aws/credentials") == "skypilot skypilot 600"
        assert server.succeed("stat -c %F /var/lib/skypilot/home/.aws/credentials").strip() == "regular file"
        server.succeed("rsync -a /var/lib/skypilot/home/.aws/credentials /tmp/uploaded-credentials")
        assert server.succeed("stat -c %F /tmp/uploaded-credentials").strip() == "regular file"
        server.succeed("grep -q ${awsKeyId} /tmp/uploaded-credentials")
        server.succeed("rm -f /tmp/uploaded-credentials")
        # The credential: loaded for the unit, readable by nobody else, never logged.
        server.fail(as_user("mallory", "cat /run/secrets/aws-credentials"))
        server.fail(as_user("alice", "cat /run/credentials/skypilot-api-server.service/aws"))
        server.fail("journalctl -u skypilot-api-server.service | grep -F ${awsSecret}")
        server.fail("grep -rF ${awsSecret} /etc/skypilot-host /var/lib/skypilot/config")
        # Sudo: start/stop/restart/status of the SkyPilot units for the group, nothing else.
        systemctl = "/run/current-system/sw/bin/systemctl"
        server.succeed(as_user("alice", f"sudo -n {systemctl} restart skypilot-cluster-manager.service"))
        server.wait_for_unit("skypilot-cluster-manager.service")
        server.succeed(as_user("alice", f"sudo -n {systemctl} status skypilot-api-server.service"))
        server.fail(as_user("alice", f"sudo -n {systemctl} restart sshd.service"))
        server.fail(as_user("alice", f"sudo -n {systemctl} edit skypilot-api-server.service"))
        server.fail(as_user("alice", "sudo -n true"))
        server.fail(as_user("alice", "sudo -n -u skypilot true"))
        server.fail(as_user("mallory", f"sudo -n {systemctl} restart skypilot-cluster-manager.service"))
        # Hardening as systemd scores it: at most 2.0 for the skypilot-host units.
        server.succeed("systemd-analyze security --threshold=20 skypilot-cluster-manager.service")
        server.succeed("systemd-analyze security --threshold=20 skypilot-monitor.service")

    with subtest("SkyPilot command functionality"):
        out = server.succeed(as_user("alice", "sky status"))
        assert "Clusters" in out or "No existing clusters" in out, out
        clusters = json.loads(server.succeed(as_user("alice", "sky status -o json")))
        assert clusters == [], clusters
        # The server has AWS's SDK (services.skypilot.clouds defaults to the credential's
        # clouds) and finds the credential: the verdict is about the credential itself. With
        # no route to AWS from the VM, that is the failed call to STS, not "enabled".
        check = server.succeed(as_user("alice", "sky check aws 2>&1"))
        assert "dependencies are not installed" not in check, check
        assert re.search(r"AWS: enabled|Failed to get AWS user", check), check
        # alice's endpoint is the server's host name, which SkyPilot treats as remote: a
        # launch from her home uploads the workdir (the launch then fails: no cloud).
        assert "http://skypilot-api:46580" in server.succeed(as_user("alice", "echo $SKYPILOT_API_SERVER_ENDPOINT"))
        server.succeed(as_user("alice", "mkdir -p project && printf \"workdir: .\\nrun: cat marker.txt\\n\" > project/task.yaml && echo upload-marker-7f3a > project/marker.txt"))
        server.execute(as_user("alice", "cd project && timeout 300 sky launch -y -c upload-check task.yaml"))
        server.succeed("grep -rlq upload-marker-7f3a /var/lib/skypilot/runtime /var/lib/skypilot/home")
        # mallory's sky cannot reach the server, and does not start one of its own.
        server.fail(as_user("mallory", "timeout 120 sky status"))
        server.fail("pgrep -u mallory -f 'sky[.]server[.]server'")

  '';
}
