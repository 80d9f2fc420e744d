<#
.SYNOPSIS
  Start the API, one solo-pool worker per queue (gan, ml, llm+system) and Flower, each with a PID file.
.EXAMPLE
  $env:REDIS_URL = "redis://127.0.0.1:6379/0"; .\scripts\windows\start-all.ps1
#>
param([switch]$NoFlower)
. (Join-Path $PSScriptRoot "_common.ps1")
if (-not $env:REDIS_URL) { throw "set REDIS_URL first (e.g. redis://127.0.0.1:6379/0): the embedded broker is not available on Windows" }
& $Python -m server db upgrade
if ($LASTEXITCODE -ne 0) { throw "database migration failed" }
Start-ServerProcess "api" @("api")
Start-ServerProcess "worker-gan" @("worker", "--queue", "gan", "--pool", "solo", "--name", "gan@$env:COMPUTERNAME")
Start-ServerProcess "worker-ml" @("worker", "--queue", "ml", "--pool", "solo", "--name", "ml@$env:COMPUTERNAME")
Start-ServerProcess "worker-llm" @("worker", "--queue", "llm,system", "--pool", "solo", "--name", "llm@$env:COMPUTERNAME")
if (-not $NoFlower) { Start-ServerProcess "flower" @("flower") }
Write-Host "stop them with .\scripts\windows\stop-all.ps1"
