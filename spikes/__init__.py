"""The built-in spikes, one package each, registered as ``realtime_spikes.spikes`` entry points."""
