# Parser benchmarks: parse + instantiate clean-traffic bindings (issue 3 target: 1,000
# bindings, each with its own MAC and IP, in under 100 ms on one core), and filter parsing.
nwfq_add_benchmark(parser_bench
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/parser_bench.cc
  LIBS nwfq_parser)
