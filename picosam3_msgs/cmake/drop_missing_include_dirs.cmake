# Removes non-existent entries from INTERFACE_INCLUDE_DIRECTORIES of every
# imported target visible in the calling directory.
#
# Why: the ROS 2 PyPI wheels (ros-*-msgs etc.) ship CMake export files whose
# include paths point at the wheel build machine (/opt/python/...). CMake
# refuses imported targets with missing include directories. On an apt or
# source ROS install all paths exist, so this is a no-op there.
function(picosam3_drop_missing_include_dirs)
  if(CMAKE_VERSION VERSION_LESS 3.21)
    return()  # IMPORTED_TARGETS needs 3.21; old CMake means a system ROS install.
  endif()
  get_directory_property(_targets IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept)
    set(_dropped FALSE)
    foreach(_dir IN LISTS _dirs)
      # Keep generator expressions untouched; they are resolved later.
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _kept "${_dir}")
      else()
        set(_dropped TRUE)
      endif()
    endforeach()
    if(_dropped)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
    endif()
  endforeach()
endfunction()
