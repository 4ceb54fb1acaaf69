# Copies the conformance inputs and predefined filters (if present) into the corpus dir.
if(EXISTS "${SRC}")
  file(GLOB seeds "${SRC}/conformance/in/*.xml" "${SRC}/predefined/*.xml")
  file(COPY ${seeds} DESTINATION "${DST}")
else()
  message(STATUS "no seed corpus: ${SRC} not found")
endif()
