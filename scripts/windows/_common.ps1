# Shared by the scripts in this folder: where the project, its venv and the PID files are.
# All logic (settings, PID checks, stopping) lives in `python -m server`; these only start processes.
$ErrorActionPreference = "Stop"
$Root = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path
$Python = Join-Path $Root ".venv\Scripts\python.exe"
if (-not (Test-Path $Python)) {
    # First run: create the venv from requirements.txt (run.py does only that for `setup`).
    & py -3 (Join-Path $Root "run.py") setup
    if ($LASTEXITCODE -ne 0) { throw "could not create the virtual environment (run.py setup failed)" }
}
$DataDir = if ($env:DATA_DIR) { $env:DATA_DIR } else { Join-Path $Root "var" }
$PidDir = Join-Path $DataDir "run\pids"
$LogDir = Join-Path $DataDir "logs"
New-Item -ItemType Directory -Force -Path $PidDir, $LogDir | Out-Null

function Start-ServerProcess([string]$Name, [string[]]$ServerArgs) {
    $pidFile = Join-Path $PidDir "$Name.pid"
    if (Test-Path $pidFile) {
        # Never overwrite a live PID file: stop-all.ps1 would lose track of that process.
        Write-Warning "$Name already has a PID file ($pidFile): run stop-all.ps1 first (it also clears stale ones)"
        return
    }
    # Start-Process joins arguments with spaces: quote those that contain spaces (e.g. C:\Users\Jane Doe).
    $argList = (@("-m", "server") + $ServerArgs + @("--pidfile", $pidFile)) |
        ForEach-Object { if ($_ -match '\s') { '"' + $_ + '"' } else { $_ } }
    $p = Start-Process -FilePath $Python -ArgumentList $argList -WorkingDirectory $Root -WindowStyle Hidden `
        -RedirectStandardOutput (Join-Path $LogDir "$Name.out.log") `
        -RedirectStandardError (Join-Path $LogDir "$Name.err.log") -PassThru
    Write-Host ("started {0,-11} pid {1,-7} logs {2}" -f $Name, $p.Id, (Join-Path $LogDir "$Name.*.log"))
}
