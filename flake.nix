{
  description = "services.skypilot: a team SkyPilot server on NixOS, with host services in Rust (skypilot-host)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self
    , nixpkgs
    ,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f:
        lib.genAttrs systems (system:
          f (import nixpkgs {
            inherit system;
            overlays = [ self.overlays.default ];
          }));
    in
    {
      # `skypilot-host`, and nixpkgs' `skypilot` moved to 0.14.1 (the version tested here).
      overlays.default = final: prev: {
        skypilot-host = final.callPackage ./nix/package.nix { };
        skypilot = final.callPackage ./nix/skypilot.nix { inherit (prev) skypilot; };
      };

      nixosModules = {
        skypilot = import ./nix/nixos-module.nix;
        default = self.nixosModules.skypilot;
      };

      packages = forAllSystems (pkgs: {
        inherit (pkgs) skypilot-host skypilot;
        default = pkgs.skypilot-host;
      });

      checks.x86_64-linux =
        let
          pkgs = import nixpkgs { system = "x86_64-linux"; };
        in
        {
          skypilot-module = pkgs.testers.runNixOSTest ./tests/skypilot-module.nix;
          skypilot-host = self.packages.x86_64-linux.skypilot-host;
        };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ pkgs.skypilot-host ];
          packages = with pkgs; [
            cargo
            clippy
            rustfmt
            nixpkgs-fmt
            python3
            sqlite
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
