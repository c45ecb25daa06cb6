# ctest driver: install minicnn into a scratch prefix, then configure, build and run
# the consumer against it (find_package) and against the source tree (add_subdirectory).
set(work ${BIN}/consumer_test)
file(REMOVE_RECURSE ${work})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BIN} --prefix ${work}/prefix
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "cmake --install failed: ${rc}")
endif()
foreach(mode package subdirectory)
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC}/tests/consumer -B ${work}/${mode}
    -DCMAKE_PREFIX_PATH=${work}/prefix -DMINICNN_CONSUMER_MODE=${mode} -DMINICNN_SOURCE=${SRC}
    -DMINICNN_BUILD_TESTS=OFF -DMINICNN_BUILD_EXAMPLES=OFF -DMINICNN_BUILD_BENCH=OFF
    RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "consumer (${mode}) configure failed")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${work}/${mode} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "consumer (${mode}) build failed")
  endif()
  execute_process(COMMAND ${work}/${mode}/consumer RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "consumer (${mode}) run failed")
  endif()
endforeach()
