# The live benchmark's traffic tool (bench/live_bench.sh): a sendmmsg() UDP sender and a
# non-reading sink for the lab's namespaces. Plain executable, no Google Benchmark: the
# figures come from the script (kernel counters, nwfqd's CPU time), not from this binary.
add_executable(live_udp_sender ${CMAKE_CURRENT_SOURCE_DIR}/live_udp_sender.cc)
nwfq_apply_defaults(live_udp_sender)

# A 1-second run of the script with a tiny count, so it cannot rot. Needs root and the
# lab (skips, exit 77, without them); shares the lab's namespace names with the
# integration suites, hence the same RESOURCE_LOCK.
if(TARGET nwfqd)
  add_test(NAME live_bench_smoke
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/live_bench.sh --smoke --build-dir ${PROJECT_BINARY_DIR})
  set_tests_properties(live_bench_smoke PROPERTIES LABELS "integration;bench-smoke"
                       RESOURCE_LOCK nwfq_lab SKIP_RETURN_CODE 77 TIMEOUT 60)
endif()
