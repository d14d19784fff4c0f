# SkyPilot 0.14.1, the version this project is tested against, as an override of nixpkgs'
# `skypilot`. It is installed from the release wheel, which carries the prebuilt dashboard,
# so nothing of the Node.js build of nixpkgs' recipe is needed.
#
# Also exports SkyPilot's own config.yaml JSON schema (scripts/sky-schema.py run with this
# SkyPilot) to share/skypilot/config.schema.json: the module validates `config` against it.
#
# With the patches of nix/patches/ (see its README), applied to the installed tree: the
# release wheel is installed as built, so there is no source tree for `patches`.
#
# Not built on the machine this was written on (no nixpkgs there); the hash is the sha256
# of skypilot-0.14.1-py3-none-any.whl as published. The patch step is run by
# nix/tests/package_checks.py on a copy of the released SkyPilot.
{ lib
, skypilot
, python3Packages
, fetchPypi
,
}:
let
  sitePatches = [
    ./patches/skypilot-0.14.1-catalog-request-cache.patch
    ./patches/skypilot-0.14.1-executor-freeze-startup-heap.patch
  ];
  # Applies sitePatches to the installed SkyPilot in $out, and compiles the patched modules
  # again (the wheel's bytecode is of the released source; unchecked-hash: the store never
  # changes, so Python need not compare the source's mtime, which the store resets).
  applySitePatches = { sitePackages, interpreter }: lib.concatMapStrings
    (p: ''
      patch -p1 --forward --batch -d "$out/${sitePackages}" -i ${p}
      for f in $(sed -n 's|^+++ b/||p' ${p}); do
        rm -f "$out/${sitePackages}/$(dirname "$f")/__pycache__/$(basename "$f" .py)".*.pyc
        ${interpreter} -m compileall -q --invalidation-mode unchecked-hash "$out/${sitePackages}/$f"
      done
    '')
    sitePatches;
  package = skypilot.overridePythonAttrs (old:
    let
      ps = python3Packages;
      # Present in recent nixpkgs; taken when there, so an older nixpkgs still evaluates and the
      # runtime-deps check names what is missing.
      optionalDeps = lib.concatMap (n: lib.optional (ps ? ${n}) ps.${n}) [
        "casbin"
        "sqlalchemy-adapter"
        "ijson"
        "setproctitle"
      ];
    in
    {
      version = "0.14.1";
      src = fetchPypi {
        pname = "skypilot";
        version = "0.14.1";
        format = "wheel";
        dist = "py3";
        python = "py3";
        hash = "sha256-ggH1ZqBRZ3cT4ogjHHqZTp67Xqeb6pvDbu7/tlRUPQI=";
      };
      pyproject = null;
      format = "wheel";
      build-system = [ ];
      nativeBuildInputs = [ ];
      patches = [ ];
      postPatch = "";
      preBuild = "";
      postBuild = "";

      # Requires-Dist of the 0.14.1 wheel (base install, no cloud extras).
      dependencies = lib.unique ((old.dependencies or [ ])
        ++ (old.propagatedBuildInputs or [ ])
        ++ (with ps; [
        aiofiles
        aiohttp
        aiosqlite
        alembic
        anyio
        asyncpg
        bcrypt
        cachetools
        click
        colorama
        cryptography
        fastapi
        filelock
        gitpython
        greenlet
        httpx
        jinja2
        jsonschema
        networkx
        orjson
        packaging
        pandas
        paramiko
        passlib
        pendulum
        pip
        prettytable
        prometheus-client
        psutil
        psycopg2
        pulp
        pydantic
        pyjwt
        python-dotenv
        python-multipart
        pyyaml
        requests
        rich
        setuptools
        sqlalchemy
        tabulate
        tqdm
        typing-extensions
        uvicorn
        wheel
      ])
        ++ (ps.uvicorn.optional-dependencies.standard or [ ])
        ++ optionalDeps);

      # Pins of the wheel that nixpkgs does not match exactly; psycopg2 replaces the binary wheel.
      pythonRelaxDeps = true;
      pythonRemoveDeps = [ "psycopg2-binary" "types-paramiko" ];

      doCheck = false;
      pythonImportsCheck = [ "sky" "sky.server.server" ];

      # Replaces the postInstall of nixpkgs' recipe, which belongs to its source build.
      postInstall = applySitePatches
        {
          sitePackages = ps.python.sitePackages;
          interpreter = ps.python.interpreter;
        } + ''
        mkdir -p $out/share/skypilot
        HOME=$TMPDIR IS_SKYPILOT_SERVER=1 \
          PYTHONPATH=$out/${ps.python.sitePackages}:$PYTHONPATH \
          ${ps.python.interpreter} ${../scripts/sky-schema.py} > $out/share/skypilot/config.schema.json
      '';

      # pythonImportsCheckPhase (after fixup, in the same shell) imports sky, which creates
      # lock directories under $HOME at import; the sandbox's HOME is unwritable.
      postFixup = (old.postFixup or "") + ''
        export HOME=$(mktemp -d)
      '';

      passthru = (old.passthru or { }) // {
        # The module starts the API server as `python -m sky.server.server` (not
        # `sky api start --deploy`, which binds every address), so it needs a Python that has
        # SkyPilot: `serverPython names` is one, with the Python packages `names` (attribute
        # names of `pythonPackages`, e.g. a cloud's SDK) added. Its sys.executable is the
        # environment's own interpreter, so SkyPilot's subprocesses find the same packages.
        pythonPackages = ps;
        # The patches applied (nix/patches/), and the step that applies them.
        inherit sitePatches applySitePatches;
        serverPython = names:
          ps.python.withPackages (p: [ (p.toPythonModule package) ] ++ map (n: p.${n}) names);
      };
    });
in
package
