# ctest driver: install minicnn into a scratch prefix, then configure, build and run
# the consumer against it (find_package) and against the source tree (add_subdirectory).
# A first configure without a build type must warn that the build would be -O0 (minicnn
# is header-only: the consumer's flags decide its speed); the build itself is Release.
set(work ${BIN}/consumer_test)
file(REMOVE_RECURSE ${work})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BIN} --prefix ${work}/prefix
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
foreach(mode package subdirectory)
  set(args -S ${SRC}/tests/consumer -B ${work}/${mode}
    -DCMAKE_PREFIX_PATH=${work}/prefix -DMINICNN_CONSUMER_MODE=${mode} -DMINICNN_SOURCE=${SRC}
    -DMINICNN_BUILD_TESTS=OFF -DMINICNN_BUILD_EXAMPLES=OFF -DMINICNN_BUILD_BENCH=OFF)
  execute_process(COMMAND ${CMAKE_COMMAND} ${args} RESULT_VARIABLE rc
    OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc)
    message(FATAL_ERROR "consumer (${mode}) configure failed:\n${out}\n${err}")
  endif()
  if(NOT err MATCHES "CMAKE_BUILD_TYPE is not set")
    message(FATAL_ERROR "consumer (${mode}) without a build type: no -O0 warning:\n${err}")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} ${args} -DCMAKE_BUILD_TYPE=Release RESULT_VARIABLE rc
    ERROR_VARIABLE err)
  if(rc OR err MATCHES "CMAKE_BUILD_TYPE is not set")
    message(FATAL_ERROR "consumer (${mode}) Release configure failed or still warns:\n${err}")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${work}/${mode} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "consumer (${mode}) build failed (README snippets: "
      "${work}/${mode}/readme_snippets.cpp)")
  endif()
  execute_process(COMMAND ${work}/${mode}/consumer RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "consumer (${mode}) run failed")
  endif()
endforeach()
