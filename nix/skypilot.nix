# SkyPilot 0.14.1, the version this project is tested against, as an override of nixpkgs'
# `skypilot`. It is installed from the release wheel, which carries the prebuilt dashboard,
# so nothing of the Node.js build of nixpkgs' recipe is needed.
#
# Also exports SkyPilot's own config.yaml JSON schema (scripts/sky-schema.py run with this
# SkyPilot) to share/skypilot/config.schema.json: the module validates `config` against it.
#
# Not built on the machine this was written on (no nixpkgs there); the hash is the sha256
# of skypilot-0.14.1-py3-none-any.whl as published.
{ lib
, skypilot
, python3Packages
, fetchPypi
,
}:
let
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
      postInstall = ''
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
        serverPython = names:
          ps.python.withPackages (p: [ (p.toPythonModule package) ] ++ map (n: p.${n}) names);
      };
    });
in
package
