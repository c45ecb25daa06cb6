# Run after a test executable is linked (tests/CMakeLists.txt, minicnn_discover_tests): lists
# its doctest cases one source file at a time and writes a ctest script with one test per
# case, named "<file>:<case>" (test_layers:...), as when every file was its own executable.
# Each test runs only its own file's case (--source-file), so two files may share a name.
#   -D EXE=<executable> -D STEMS=<file stems, comma-separated> -D OUT=<ctest script>
#   -D WORKDIR=<dir> -D LABELS=<stem=label,...> (optional extra labels per file)
cmake_minimum_required(VERSION 3.16)

# One argument of a ctest command, bracket-quoted so that any test name survives.
function(bracket out value)
  set(${out} "[==[${value}]==]" PARENT_SCOPE)
endfunction()

string(REPLACE "," ";" stems "${STEMS}")
string(REPLACE "," ";" label_pairs "${LABELS}")
set(script "")
foreach(stem IN LISTS stems)
  execute_process(COMMAND "${EXE}" --list-test-cases "--source-file=*/${stem}.cpp"
    OUTPUT_VARIABLE listing RESULT_VARIABLE rc WORKING_DIRECTORY "${WORKDIR}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "listing the test cases of ${stem} in ${EXE} failed (${rc}):\n${listing}")
  endif()
  set(labels "")
  foreach(pair IN LISTS label_pairs)
    if(pair MATCHES "^${stem}=(.*)$")
      list(APPEND labels "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  string(REPLACE "\n" ";" lines "${listing}")
  set(count 0)
  foreach(name IN LISTS lines)
    if(name STREQUAL "" OR name MATCHES "^=+$" OR name MATCHES "^\\[doctest\\] ")
      continue()
    endif()
    # doctest splits --test-case filters at commas; a backslash keeps one literal.
    string(REPLACE "," "\\," filter "${name}")
    bracket(q_test "${stem}:${name}")
    bracket(q_filter "--test-case=${filter}")
    bracket(q_exe "${EXE}")
    bracket(q_dir "${WORKDIR}")
    string(APPEND script "add_test(${q_test} ${q_exe} ${q_filter} --source-file=*/${stem}.cpp)\n")
    string(APPEND script "set_tests_properties(${q_test} PROPERTIES WORKING_DIRECTORY ${q_dir}"
      " SKIP_RETURN_CODE 77 LABELS \"${labels}\")\n")
    math(EXPR count "${count} + 1")
  endforeach()
  if(count EQUAL 0)
    message(FATAL_ERROR "${EXE} has no test case from ${stem}.cpp")
  endif()
endforeach()
file(WRITE "${OUT}" "${script}")
