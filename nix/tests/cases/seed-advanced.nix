# The seed's "Advanced Configuration", verbatim.
{
  services.skypilot = {
    enable = true;
    enableWebUI = true;
    enableCluster = true;
    systemdServices = true;
    
    # Custom user and directories
    user = "skypilot";
    group = "skypilot";
    configDir = "/var/lib/skypilot/config";
    logsDir = "/var/log/skypilot";
    cacheDir = "/var/cache/skypilot";
    
    # Web UI configuration
    webUI = {
      port = 8080;
      host = "0.0.0.0";
      openFirewall = true;
    };
    
    # Cluster management
    cluster = {
      autoStop = 60; # minutes
      defaultInstanceType = "m5.large";
      defaultRegion = "us-west-2";
    };
    
    # Monitoring
    monitoring = {
      enable = true;
      metricsPort = 9090;
      logLevel = "INFO";
    };
    
    # SkyPilot configuration
    config = {
      cloud = {
        aws = {
          region = "us-west-2";
        };
        gcp = {
          project = "my-project";
          zone = "us-central1-a";
        };
      };
      spot = {
        enabled = true;
        max_price = 1.0;
      };
    };
    
    # Cloud credentials
    cloudCredentials = {
      aws = "/run/secrets/aws-credentials";
      gcp = "/run/secrets/gcp-service-account.json";
    };
    
    # Extra environment variables
    extraEnvironment = ''
      export AWS_PROFILE=skypilot
      export GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp-service-account.json
    '';
  };
}
