# Conntrack benchmarks: lookup-and-update hit, insert, expiry sweep at 1k/100k/1M
# connections, and bytes per connection.
nwfq_add_benchmark(conntrack_bench
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/conntrack_bench.cc
  LIBS nwfq_conntrack)
