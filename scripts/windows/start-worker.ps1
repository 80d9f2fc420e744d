<#
.SYNOPSIS
  Start one Celery worker for one queue (solo pool: the pool that works on Windows).
.EXAMPLE
  .\scripts\windows\start-worker.ps1 -Queue gan
.NOTES
  Needs REDIS_URL (the embedded broker is not available on Windows). Cancellation and job time
  limits work under the solo pool because jobs check for them themselves.
#>
param(
    [Parameter(Mandatory = $true)][ValidateSet("gan", "ml", "llm", "system")][string]$Queue,
    [string]$Name = "$Queue@$env:COMPUTERNAME"
)
. (Join-Path $PSScriptRoot "_common.ps1")
Start-ServerProcess "worker-$Queue" @("worker", "--queue", $Queue, "--pool", "solo", "--name", $Name)
