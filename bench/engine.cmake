# Engine: per-packet cost through Engine::Decide (parse + conntrack + evaluation) for an
# established connection and for new connections, at 10 .. 10,000 rules.
nwfq_add_benchmark(engine_bench
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/engine_bench.cc
  LIBS nwfq_engine nwfq_testing)
