# Chooses the CPython gilscope embeds and defines the imported target
# gilscope::python_embed (headers, internal headers, libpython, rpath).
#
# GILSCOPE_PYTHON (cache variable or environment variable) names a python3.X
# executable; otherwise the newest supported one found: pyenv's 3.13, then
# 3.12, then Debian's python3.11 (python3-dev).

set(GILSCOPE_SUPPORTED_PYTHONS "3.11, 3.12, 3.13")

if(NOT GILSCOPE_PYTHON AND DEFINED ENV{GILSCOPE_PYTHON} AND NOT "$ENV{GILSCOPE_PYTHON}" STREQUAL "")
  set(GILSCOPE_PYTHON "$ENV{GILSCOPE_PYTHON}")
endif()

if(NOT GILSCOPE_PYTHON)
  set(_pyenv_root "$ENV{PYENV_ROOT}")
  if(_pyenv_root STREQUAL "")
    set(_pyenv_root "$ENV{HOME}/.pyenv")
  endif()
  set(_candidates)
  foreach(_minor 13 12)
    file(GLOB _found "${_pyenv_root}/versions/3.${_minor}.*/bin/python3.${_minor}")
    # Prefer release builds (3.13.0 over 3.13.0t or -dev): shortest name, highest patch.
    list(SORT _found COMPARE NATURAL ORDER DESCENDING)
    foreach(_f IN LISTS _found)
      if(NOT _f MATCHES "t/bin/|-dev/|-debug/")
        list(APPEND _candidates "${_f}")
      endif()
    endforeach()
  endforeach()
  list(APPEND _candidates /usr/bin/python3.11)
  foreach(_c IN LISTS _candidates)
    if(EXISTS "${_c}")
      set(GILSCOPE_PYTHON "${_c}")
      break()
    endif()
  endforeach()
  if(NOT GILSCOPE_PYTHON)
    message(FATAL_ERROR "gilscope: no supported CPython found (supported: ${GILSCOPE_SUPPORTED_PYTHONS}). "
                        "Install python3-dev or set GILSCOPE_PYTHON=/path/to/python3.X")
  endif()
endif()
set(GILSCOPE_PYTHON "${GILSCOPE_PYTHON}" CACHE FILEPATH "The python3.X whose CPython gilscope embeds" FORCE)

execute_process(
  COMMAND "${GILSCOPE_PYTHON}" -c [=[
import sys, sysconfig, os
v = sysconfig.get_config_var
print(";".join([
    "%d.%d" % sys.version_info[:2], sys.version.split()[0],
    sysconfig.get_path("include") or v("INCLUDEPY"),
    v("LIBDIR") or "", v("LDLIBRARY") or "", v("MULTIARCH") or "",
    os.path.realpath(sys.executable), str(int(bool(v("Py_GIL_DISABLED")))), sys.base_prefix,
]))
]=]
  OUTPUT_VARIABLE _py_info OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _py_rc ERROR_VARIABLE _py_err)
if(NOT _py_rc EQUAL 0)
  message(FATAL_ERROR "gilscope: cannot run GILSCOPE_PYTHON=${GILSCOPE_PYTHON}: ${_py_err}")
endif()
list(GET _py_info 0 GILSCOPE_PYTHON_MINOR_VERSION)
list(GET _py_info 1 GILSCOPE_PYTHON_FULL_VERSION)
list(GET _py_info 2 _py_include)
list(GET _py_info 3 _py_libdir)
list(GET _py_info 4 _py_ldlibrary)
list(GET _py_info 5 _py_multiarch)
list(GET _py_info 6 GILSCOPE_PYTHON_EXECUTABLE)
list(GET _py_info 7 _py_nogil)
list(GET _py_info 8 GILSCOPE_PYTHON_HOME)
string(REGEX REPLACE "^3\\." "" GILSCOPE_PYTHON_MINOR_VERSION_NUMBER "${GILSCOPE_PYTHON_MINOR_VERSION}")

if(NOT GILSCOPE_PYTHON_MINOR_VERSION MATCHES "^3\\.(11|12|13)$")
  message(FATAL_ERROR "gilscope: CPython ${GILSCOPE_PYTHON_FULL_VERSION} (${GILSCOPE_PYTHON}) is not supported; "
                      "supported versions: ${GILSCOPE_SUPPORTED_PYTHONS}. Set GILSCOPE_PYTHON to one of them.")
endif()
if(_py_nogil STREQUAL "1")
  message(FATAL_ERROR "gilscope: ${GILSCOPE_PYTHON} is a free-threaded build: it has no GIL to show. "
                      "Use a default build of ${GILSCOPE_SUPPORTED_PYTHONS}.")
endif()
if(NOT EXISTS "${_py_include}/Python.h" OR NOT EXISTS "${_py_include}/internal/pycore_gil.h")
  message(FATAL_ERROR "gilscope: ${GILSCOPE_PYTHON} has no development headers with internal headers "
                      "at ${_py_include} (Debian: apt-get install python${GILSCOPE_PYTHON_MINOR_VERSION}-dev)")
endif()

set(_py_lib "")
foreach(_dir "${_py_libdir}" "${_py_libdir}/${_py_multiarch}")
  if(_py_ldlibrary MATCHES "\\.so" AND EXISTS "${_dir}/${_py_ldlibrary}")
    set(_py_lib "${_dir}/${_py_ldlibrary}")
    break()
  endif()
endforeach()
if(NOT _py_lib)
  find_library(_py_lib NAMES "python${GILSCOPE_PYTHON_MINOR_VERSION}"
               HINTS "${_py_libdir}" "${_py_libdir}/${_py_multiarch}" NO_DEFAULT_PATH)
endif()
if(NOT _py_lib)
  message(FATAL_ERROR "gilscope: no shared libpython${GILSCOPE_PYTHON_MINOR_VERSION} for ${GILSCOPE_PYTHON} "
                      "(looked in ${_py_libdir}); gilscope needs a CPython built with --enable-shared")
endif()
get_filename_component(_py_lib_dir "${_py_lib}" DIRECTORY)

add_library(gilscope_python_embed INTERFACE)
add_library(gilscope::python_embed ALIAS gilscope_python_embed)
target_include_directories(gilscope_python_embed SYSTEM INTERFACE "${_py_include}")
target_link_libraries(gilscope_python_embed INTERFACE "${_py_lib}")
target_link_options(gilscope_python_embed INTERFACE "-Wl,-rpath,${_py_lib_dir}")

message(STATUS "gilscope: embedding CPython ${GILSCOPE_PYTHON_FULL_VERSION} from ${GILSCOPE_PYTHON} (${_py_lib})")
