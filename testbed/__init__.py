"""What the tests and the benchmarks run against, on loopback: local servers that speak the
providers' real protocols (OpenAI, PostgREST over real PostgreSQL, Google's gRPC, SpeechKit),
throwaway PostgreSQL and Redis, a latency proxy, and people and workers in LiveKit rooms."""
