# The seed's "Basic Configuration", verbatim.
{
  services.skypilot = {
    enable = true;
  };
}
