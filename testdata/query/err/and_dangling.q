AND foo AND
