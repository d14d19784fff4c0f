# The module as the flake exports it: `services.skypilot` with its packages defaulting to
# this repository's skypilot-host and SkyPilot 0.14.1, built with the system's nixpkgs.
{ lib
, pkgs
, ...
}: {
  imports = [ ./module.nix ];
  services.skypilot = {
    package = lib.mkDefault (pkgs.callPackage ./skypilot.nix { });
    hostPackage = lib.mkDefault (pkgs.callPackage ./package.nix { });
  };
}
