
’!
2š!-
!containerd.runc.v1.ProcessDetails
exec-1