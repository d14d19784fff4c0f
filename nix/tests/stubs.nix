# Evaluation without nixpkgs' package set or NixOS: minimal declarations of the NixOS
# options `services.skypilot` and the VM test's nodes set, and a `pkgs` of derivation-free
# stand-ins (attribute sets with a store path), enough for `lib.evalModules`.
{ lib }:
let
  inherit (lib) mkOption types;

  fakeHash = name: builtins.substring 0 32 (builtins.hashString "sha256" name);
  mkStub = name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "${builtins.storeDir}/${fakeHash name}-${name}";
      drvPath = "${builtins.storeDir}/${fakeHash "drv-${name}"}-${name}.drv";
    }
    // extra;

  pkgStub = pname: mkStub pname {
    inherit pname;
    meta.mainProgram = pname;
  };

  # A TOML value as pkgs.formats.toml accepts it.
  tomlValue = types.nullOr (types.oneOf [
    types.bool
    types.int
    types.float
    types.str
    types.path
    (types.attrsOf tomlValue)
    (types.listOf tomlValue)
  ]);

  # The Python packages the module may ask for (nix/skypilot.nix passes nixpkgs' set).
  pythonPackages = lib.genAttrs [
    "boto3"
    "botocore"
    "awscli"
    "google-api-python-client"
    "google-cloud-storage"
    "pyopenssl"
    "azure-core"
    "azure-identity"
    "azure-mgmt-network"
    "azure-mgmt-compute"
    "azure-storage-blob"
    "msgraph-sdk"
    "msrestazure"
    "kubernetes"
    "websockets"
    "python-dateutil"
    "runpod"
    "tomli"
    "pycares"
  ]
    (n: pkgStub "python3.12-${n}");

  # SkyPilot as nix/skypilot.nix provides it: `serverPython names` is a Python with SkyPilot
  # and those packages; its name lists them (for nix/tests/run_rendered.py) when they fit in
  # a store path name, else it counts them.
  skypilot = pkgStub "skypilot-0.14.1" // {
    version = "0.14.1";
    inherit pythonPackages;
    serverPython = names:
      let
        listed = "skypilot-server-python-0.14.1${lib.concatMapStrings (n: "+${n}") names}";
      in
      mkStub
        (if builtins.stringLength listed <= 160
        then listed
        else "skypilot-server-python-0.14.1-${toString (builtins.length names)}-packages")
        { packages = names; };
  };

  pkgs = {
    # Only what the module and the VM test refer to.
    inherit skypilot;
    skypilot-host = pkgStub "skypilot-host-0.1.0";
    coreutils = pkgStub "coreutils";
    openssh = pkgStub "openssh";
    rsync = pkgStub "rsync";
    curl = pkgStub "curl";
    jq = pkgStub "jq";
    sqlite = pkgStub "sqlite";
    postgresql = pkgStub "postgresql-16";
    python3 = pkgStub "python3";
    iptables = pkgStub "iptables";
    sudo = pkgStub "sudo";
    bash = pkgStub "bash";
    kubectl = pkgStub "kubectl";
    google-cloud-sdk = pkgStub "google-cloud-sdk";
    azure-cli = pkgStub "azure-cli";
    # The flake's module builds its packages with callPackage: skypilot.nix and package.nix.
    callPackage = path: _args:
      {
        "skypilot.nix" = skypilot;
        "package.nix" = pkgStub "skypilot-host-0.1.0";
      }.${baseNameOf path}
        or (throw "stubs.nix: no stand-in for callPackage ${toString path}");
    writeText = name: text: mkStub name { inherit text; };
    writeShellScript = name: text: mkStub name { inherit text; };
    runCommand = name: env: buildCommand: mkStub name { inherit env buildCommand; };
    formats.toml = _: {
      type = types.attrsOf tomlValue;
      generate = name: value: mkStub name { inherit value; };
    };
  };

  unitValue = types.oneOf [ types.bool types.int types.str (types.listOf (types.oneOf [ types.bool types.int types.str ])) ];
  strList = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
  str = default:
    mkOption {
      type = types.str;
      inherit default;
    };

  unitOptions = {
    enable = mkOption {
      type = types.bool;
      default = true;
    };
    description = str "";
    wantedBy = strList;
    requiredBy = strList;
    wants = strList;
    requires = strList;
    after = strList;
    before = strList;
    unitConfig = mkOption {
      type = types.attrsOf unitValue;
      default = { };
    };
  };

  # Declarations of the NixOS options used, with NixOS's names and types.
  nixosOptions = {
    options = {
      assertions = mkOption {
        type = types.listOf (types.submodule {
          options = {
            assertion = mkOption { type = types.bool; };
            message = mkOption { type = types.str; };
          };
        });
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };

      users.users = mkOption {
        default = { };
        type = types.attrsOf (types.submodule {
          options = {
            isSystemUser = mkOption {
              type = types.bool;
              default = false;
            };
            isNormalUser = mkOption {
              type = types.bool;
              default = false;
            };
            group = str "";
            home = str "/var/empty";
            description = str "";
            uid = mkOption {
              type = types.nullOr types.int;
              default = null;
            };
            extraGroups = strList;
            password = mkOption {
              type = types.nullOr types.str;
              default = null;
            };
          };
        });
      };
      users.groups = mkOption {
        default = { };
        type = types.attrsOf (types.submodule {
          options = {
            gid = mkOption {
              type = types.nullOr types.int;
              default = null;
            };
            members = strList;
          };
        });
      };

      systemd.services = mkOption {
        default = { };
        type = types.attrsOf (types.submodule {
          options =
            unitOptions
            // {
              environment = mkOption {
                type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
                default = { };
              };
              serviceConfig = mkOption {
                type = types.attrsOf unitValue;
                default = { };
              };
              script = mkOption {
                type = types.lines;
                default = "";
              };
              path = mkOption {
                type = types.listOf types.package;
                default = [ ];
              };
            };
        });
      };
      systemd.timers = mkOption {
        default = { };
        type = types.attrsOf (types.submodule {
          options =
            unitOptions
            // {
              timerConfig = mkOption {
                type = types.attrsOf unitValue;
                default = { };
              };
            };
        });
      };
      systemd.tmpfiles.rules = strList;

      networking.firewall = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        allowedTCPPorts = mkOption {
          type = types.listOf types.port;
          default = [ ];
        };
        allowedUDPPorts = mkOption {
          type = types.listOf types.port;
          default = [ ];
        };
        extraCommands = mkOption {
          type = types.lines;
          default = "";
        };
        extraStopCommands = mkOption {
          type = types.lines;
          default = "";
        };
      };
      networking.hosts = mkOption {
        type = types.attrsOf (types.listOf types.str);
        default = { };
      };
      networking.nftables = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        tables = mkOption {
          default = { };
          type = types.attrsOf (types.submodule {
            options = {
              family = mkOption { type = types.enum [ "ip" "ip6" "inet" "arp" "bridge" "netdev" ]; };
              content = mkOption { type = types.lines; };
            };
          });
        };
      };

      security.sudo = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        extraRules = mkOption {
          default = [ ];
          type = types.listOf (types.submodule {
            options = {
              users = strList;
              groups = strList;
              host = str "ALL";
              runAs = str "ALL:ALL";
              commands = mkOption {
                type = types.listOf (types.either types.str (types.submodule {
                  options = {
                    command = mkOption { type = types.str; };
                    options = strList;
                  };
                }));
              };
            };
          });
        };
      };

      # services.postgresql as far as database.createLocally sets it.
      services.postgresql = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        package = mkOption {
          type = types.anything;
          default = pkgStub "postgresql-16";
        };
        ensureDatabases = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        ensureUsers = mkOption {
          type = types.listOf (types.submodule {
            options = {
              name = mkOption { type = types.str; };
              ensureDBOwnership = mkOption {
                type = types.bool;
                default = false;
              };
            };
          });
          default = [ ];
        };
      };

      security.sudo-rs = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        extraRules = mkOption {
          default = [ ];
          type = types.listOf types.anything;
        };
      };

      environment = {
        systemPackages = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        variables = mkOption {
          type = types.attrsOf (types.either types.str (types.listOf types.str));
          default = { };
        };
        etc = mkOption {
          default = { };
          type = types.attrsOf (types.submodule {
            options = {
              source = mkOption { type = types.path; };
              mode = str "symlink";
            };
          });
        };
      };

      # Set by the VM test's nodes only; what they hold is the test framework's business.
      virtualisation = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
    };
  };
in
{
  inherit pkgs nixosOptions mkStub;
}
