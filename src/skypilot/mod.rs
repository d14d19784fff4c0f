//! REST client for SkyPilot's API server. (Being written.)
