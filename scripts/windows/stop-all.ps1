<#
.SYNOPSIS
  Stop exactly the processes the start scripts started (by their PID files), never any other python.
.NOTES
  `python -m server stop` checks each PID file's process start time, so a pid reused by another
  program is left alone and only its stale PID file is removed.
#>
. (Join-Path $PSScriptRoot "_common.ps1")
& $Python -m server stop --pid-dir $PidDir
